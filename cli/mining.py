"""``taomm mine-negatives``: TF-IDF hard negatives for a feature store or a captions file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from taomm.cli.common import (
    JsonOpt,
    WorkspaceOpt,
    fail,
    print_json,
    progress_bar,
    stderr_console,
    workspace_path,
)
from taomm.datasets.store import FeatureStore


def mine_negatives(
    store: Annotated[Path | None, typer.Option("--store", help="Store folder. Default: the workspace's store.",
                                               show_default=False)] = None,
    captions: Annotated[Path | None, typer.Option("--captions", help="Text file, one caption per line "
                                                  "(instead of a store); needs --out.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="JSONL output for --captions.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Negatives per caption.")] = 30,
    max_sim: Annotated[float, typer.Option("--max-sim", help="Keep similarities strictly below this.")] = 0.5,
    chunk_size: Annotated[int, typer.Option("--chunk-size", min=1, help="Rows per progress step.")] = 256,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Mine TF-IDF hard negatives: per caption, the most similar captions of other images below --max-sim.

    Store mode writes them into the store (read by pretraining's ITM-hn); --captions mode
    writes one JSON line per caption: {"index": i, "negatives": [[j, sim], ...]}.
    """
    if captions is not None and out is None:
        raise fail("--captions needs --out OUT.jsonl", 2)
    t0 = time.perf_counter()
    if captions is not None:
        docs = _read_captions(captions)
        indices, sims = _mine(docs, top_k, max_sim, chunk_size)
        _write_jsonl(out, indices, sims)
    else:
        from taomm.datasets.store_negatives import mine_store_negatives

        path = workspace_path(store, workspace, "store", "--store PATH")
        with FeatureStore(path) as fs:
            total = len(fs)
        with progress_bar("mining negatives", total) as advance:
            indices = mine_store_negatives(path, top_k=top_k, max_sim=max_sim, chunk_size=chunk_size,
                                           on_progress=advance)
    found = (indices >= 0).sum(axis=1)
    summary = {"items": len(indices), "mean_negatives": round(float(found.mean()) if len(indices) else 0.0, 3),
               "items_without_negatives": int((found == 0).sum()),
               "seconds": round(time.perf_counter() - t0, 3)}
    if json_out:
        print_json(summary)
    else:
        stderr_console().print(f"{summary['items']} items, {summary['mean_negatives']} negatives per item, "
                               f"{summary['items_without_negatives']} without any, {summary['seconds']} s")


def _read_captions(path: Path) -> list[list[str]]:
    from taomm.text.segment import segment  # jieba loads its dictionary: only when needed

    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it starts no empty caption
    return [segment(line.rstrip("\r")) for line in lines]


def _mine(docs: list[list[str]], top_k: int, max_sim: float, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    from taomm.text.mining import mine_hard_negatives  # numba: imported only when mining

    with progress_bar("mining negatives", len(docs)) as advance:
        return mine_hard_negatives(docs, top_k=top_k, max_sim=max_sim, chunk_size=chunk_size,
                                   on_progress=advance)


def _write_jsonl(path: Path, indices: np.ndarray, sims: np.ndarray) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i, (row, sim) in enumerate(zip(indices.tolist(), sims.tolist(), strict=True)):
            negatives = [[j, round(s, 6)] for j, s in zip(row, sim, strict=True) if j >= 0]
            f.write(json.dumps({"index": i, "negatives": negatives}) + "\n")


def register(app: typer.Typer) -> None:
    app.command("mine-negatives", epilog="Examples:  taomm mine-negatives   |   "
                "taomm mine-negatives --captions caps.txt --out negs.jsonl --json")(mine_negatives)
