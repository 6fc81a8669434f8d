"""``taomm mine-negatives``: TF-IDF hard negatives for a feature store or a captions file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from taomm.cli.common import (
    JsonOpt,
    WorkspaceOpt,
    fail,
    print_json,
    progress_bar,
    stderr_console,
    training_processes,
    workspace_path,
)

if TYPE_CHECKING:
    from taomm.text.mining_ranks import RankMining


def mine_negatives(
    store: Annotated[Path | None, typer.Option("--store", help="Store folder. Default: the workspace's store.",
                                               show_default=False)] = None,
    captions: Annotated[Path | None, typer.Option("--captions", help="Text file, one caption per line "
                                                  "(instead of a store); needs --out.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="JSONL output for --captions.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Negatives per caption.")] = 30,
    max_sim: Annotated[float, typer.Option("--max-sim", help="Keep similarities strictly below this.")] = 0.5,
    chunk_size: Annotated[int, typer.Option("--chunk-size", min=1, help="Rows per progress step.")] = 256,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="Mining threads per process. Default: the "
                                                "CPU's cores, shared by the torchrun ranks on this machine.",
                                                show_default=False)] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Mine TF-IDF hard negatives: per caption, the most similar captions of other images below --max-sim.

    Store mode writes them into the store (read by pretraining's ITM-hn); --captions mode
    writes one JSON line per caption: {"index": i, "negatives": \\[\\[j, sim], ...]}. Under
    torchrun each rank segments its share of the captions, rank 0 merges their counts, and
    each rank mines a block of the distinct TF-IDF rows (captions repeating a title share
    one) for all of their captions: the same result as one process; rank 0 writes.
    """
    if captions is not None and out is None:
        raise fail("--captions needs --out OUT.jsonl", 2)
    from taomm.text.mining_ranks import MINING_TIMEOUT  # numba: imported only when mining

    t0 = time.perf_counter()
    path = None if captions is not None else workspace_path(store, workspace, "store", "--store PATH")
    options = dict(top_k=top_k, max_sim=max_sim, chunk_size=chunk_size, threads=threads, progress=progress_bar)
    with training_processes("cpu", MINING_TIMEOUT) as info:  # under torchrun, each rank mines a block of vectors
        if path is None:
            from taomm.text.mining_ranks import mine_ranks

            mined = mine_ranks(lambda part, parts: (_read_captions(captions, part, parts), None),
                               out.with_name(out.name + ".mining-tmp"), info, **options)
            if info.is_main:
                _write_jsonl(out, mined.indices, mined.sims)
        else:
            from taomm.datasets.store_negatives import mine_store_negatives_ranks

            mined = mine_store_negatives_ranks(path, info, **options)
        if info.is_main:
            _print_summary(mined, time.perf_counter() - t0, json_out)


def _print_summary(mined: RankMining, seconds: float, json_out: bool) -> None:
    found = (mined.indices >= 0).sum(axis=1)
    items = len(mined.indices)
    summary = {"items": items, "mean_negatives": round(float(found.mean()) if items else 0.0, 3),
               "items_without_negatives": int((found == 0).sum()), "seconds": round(seconds, 3),
               "world_size": len(mined.shares), "threads_per_rank": mined.threads, "ranks": mined.shares}
    if json_out:
        print_json(summary)
    else:
        ranks = f" on {len(mined.shares)} ranks" if len(mined.shares) > 1 else ""
        stderr_console().print(f"{summary['items']} items, {summary['mean_negatives']} negatives per item, "
                               f"{summary['items_without_negatives']} without any, {summary['seconds']} s{ranks}")


def _read_captions(path: Path, part: int = 0, parts: int = 1) -> list[list[str]]:
    """The segmented words of the ``part``-th of ``parts`` contiguous shares of the file's lines."""
    from taomm.text.segment import segment  # jieba loads its dictionary: only when needed
    from taomm.train.distributed import row_share

    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it starts no empty caption
    share = row_share(len(lines), part, parts)
    return [segment(line.rstrip("\r")) for line in lines[share.start:share.stop]]


def _write_jsonl(path: Path, indices: np.ndarray, sims: np.ndarray) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i, (row, sim) in enumerate(zip(indices.tolist(), sims.tolist(), strict=True)):
            negatives = [[j, round(s, 6)] for j, s in zip(row, sim, strict=True) if j >= 0]
            f.write(json.dumps({"index": i, "negatives": negatives}) + "\n")


def register(app: typer.Typer) -> None:
    app.command("mine-negatives", epilog="Examples:  taomm mine-negatives   |   "
                "taomm mine-negatives --captions caps.txt --out negs.jsonl --json")(mine_negatives)
