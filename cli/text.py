"""``taomm clean-titles`` and ``taomm build-vocab``: the text pipeline from the command line."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from taomm.cli.common import (
    JsonOpt,
    QueryLogOpt,
    WorkspaceOpt,
    print_json,
    query_log_path,
    stderr_console,
    workspace_path,
)
from taomm.datasets.store_vocab import build_store_vocab
from taomm.errors import TaommError
from taomm.text import MAX_TITLE_CHARS


def _read_titles(lines: Iterator[str], field: str, origin: str) -> Iterator[str]:
    """Titles from plain lines, or from JSONL objects with a ``field`` key."""
    for n, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                obj = None
            if isinstance(obj, dict):
                if field not in obj:
                    raise TaommError(f"{origin}:{n}: JSON line without a {field!r} field")
                value = obj[field]
                yield "" if value is None else str(value)
                continue
        yield line


def _open_lines(source: str) -> Iterator[str]:
    if source == "-":
        yield from io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
        return
    with open(source, encoding="utf-8", errors="replace") as f:
        yield from f


def clean_titles_command(
    source: Annotated[str, typer.Argument(metavar="[FILE|-]", help="Titles: plain lines or JSONL with a title field; - reads stdin.")] = "-",
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per input line on stdout.")] = False,
    field: Annotated[str, typer.Option("--field", help="The title's key in JSONL input.")] = "title",
    workers: Annotated[int, typer.Option("--workers", min=0, help="Processes; 0: the CPU count, at most 4.")] = 0,
    max_chars: Annotated[int, typer.Option("--max-chars", min=1, help="Truncate kept titles to this many characters.")] = MAX_TITLE_CHARS,
    lang: Annotated[str, typer.Option("--lang", help="zh: product titles; en: English captions (no Chinese "
                                      "requirement, no spam filter, whitespace words).")] = "zh",
) -> None:
    """Clean product titles: normalise, drop non-Chinese and spam, segment, truncate.

    Without --json each line is the verdict (ok, empty, no_chinese or spam:<category>), a
    tab and the cleaned title's words separated by spaces. Counts per reason go to stderr.
    """
    from taomm.text.clean import clean_titles, make_cleaner

    if lang not in ("zh", "en"):
        raise TaommError(f"--lang must be zh or en, not {lang!r}")
    workers = workers or min(4, os.cpu_count() or 1)
    counts: Counter[str] = Counter()
    start = time.perf_counter()
    titles = _read_titles(_open_lines(source), field, "stdin" if source == "-" else source)
    out = sys.stdout
    results = clean_titles(titles, workers=workers, max_chars=max_chars) if lang == "zh" else map(make_cleaner(lang), titles)
    for result in results:
        counts[result.reason or "kept"] += 1
        if json_out:
            out.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
        else:
            words = " ".join(w.strip() for w in result.words if not w.isspace())
            out.write(f"{result.reason or 'ok'}\t{words}\n")
    total = sum(counts.values())
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "kept") or "none"
    stderr_console().print(f"{total} titles: {counts['kept']} kept; rejected: {rejected} "
                           f"({time.perf_counter() - start:.1f} s)")


def build_vocab_command(
    store: Annotated[Path | None, typer.Option("--store", help="Feature store. Default: the workspace's store.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="vocab.txt to write. Default: STORE/vocab.txt.")] = None,
    vocab_size: Annotated[int, typer.Option("--vocab-size", min=16, help="Target vocabulary size.")] = 8000,
    min_frequency: Annotated[int, typer.Option("--min-frequency", min=1, help="Drop rarer pieces.")] = 2,
    query_log: QueryLogOpt = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train a BERT-compatible WordPiece vocab.txt on the store's titles.

    Each Chinese character is its own token (as in bert-base-chinese); the store records
    the vocabulary it was built with. The queries of a query log (--query-log, or the
    workspace's) are learned from too: shoppers type words sellers do not (上衣).
    """
    from taomm.datasets.retrieval import logged_queries

    path = workspace_path(store, workspace, "store", "--store PATH")
    log = query_log_path(query_log, workspace)
    queries = logged_queries(log) if log else []
    vocab, info, count = build_store_vocab(path, out, vocab_size=vocab_size, min_frequency=min_frequency,
                                           extra_texts=queries)
    summary = {"vocab": str(vocab.resolve()), "vocab_size": info["vocab_size"], "titles": count,
               "queries": len(queries)}
    if json_out:
        print_json(summary)
    else:
        also = f" and {len(queries)} logged queries" if queries else ""
        stderr_console().print(f"wrote {summary['vocab']}: {summary['vocab_size']} tokens from {count} titles{also}")


def register(app: typer.Typer) -> None:
    app.command("clean-titles", epilog="Examples:  taomm clean-titles titles.txt --json   |   "
                "cat items.jsonl | taomm clean-titles -")(clean_titles_command)
    app.command("build-vocab", epilog="Examples:  taomm build-vocab   |   taomm build-vocab --store store "
                "--vocab-size 8000")(build_vocab_command)
