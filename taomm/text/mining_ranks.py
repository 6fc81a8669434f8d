"""Hard-negative mining split over the ranks of a torchrun group (one process: plain mining).

- Every rank reads and counts the words of its share of the captions
  (:func:`~taomm.text.mining.term_counts`: segmenting and tokenising, the part that grows
  with the captions' text, split over the ranks), saved in a scratch folder that every rank
  can read; rank 0 merges the shares into the join inputs once
  (:func:`~taomm.text.mining.join_arrays_of_counts`: the TF-IDF matrix, its transpose, the
  common-term split, the groups), saved there as ``.npy`` files.
- After a barrier every rank memory-maps them (``np.load(mmap_mode="c")``: one copy in the
  page cache, shared, not one per process) and mines its share of the distinct TF-IDF rows
  ("vectors": captions repeating a title share one), a contiguous block of about equal work
  (:func:`~taomm.text.mining.vector_blocks`), for all of their captions against all
  captions; it saves its captions and their negatives as ``.npy``. Splitting vectors rather
  than captions ranks no vector twice.
- Rank 0 puts every caption's negatives in its row and removes the scratch folder.

A caption's negatives depend on its vector and the shared arrays only (the kernel's
per-thread buffers are reset between vectors), so the split changes no tie: the result is
bit for bit one process's. Each rank's share (``{"rank", "vectors": [start, stop],
"handled", "captions", "seconds", "cpu_seconds"}``: its block, the vectors it ranked, their
captions, their wall and CPU time) is gathered for the report;
``taomm.train.distributed.check_row_shares`` checks them. A rank that fails fails every rank
(:class:`~taomm.train.distributed.RanksFailedError`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from taomm.text.mining import (
    JOIN_ARRAYS,
    Groups,
    TermCounts,
    join_arrays,
    join_arrays_of_counts,
    mine_vectors,
    term_counts,
    vector_blocks,
)
from taomm.train.distributed import DistInfo, all_gather_json, on_every_rank

Progress = Callable[[str, int | None], AbstractContextManager[Callable[[int], None]]]
# captions(part, parts): the words of the part-th of parts contiguous shares of the captions
# (taomm.train.distributed.row_share of their count) and their images: ints or strings (a
# photo's key), the same on every rank for the same image; None: each caption its own image.
Captions = Callable[[int, int], tuple[Sequence[Sequence[str]], Groups]]

# Ranks wait for rank 0's matrix and for the slowest block: hours on millions of captions,
# far past torch's default collective timeout.
MINING_TIMEOUT = timedelta(days=1)


@dataclass
class RankMining:
    """What :func:`mine_ranks` returns: the negatives (``None`` on ranks other than 0), the
    threads each rank mined with and every rank's share."""

    indices: np.ndarray | None
    sims: np.ndarray | None
    threads: int
    shares: list[dict[str, Any]]


def default_threads(info: DistInfo) -> int:
    """Mining threads per process: the CPU's cores shared by the ranks on this machine."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size)) if info.distributed else 1
    return max(1, (os.cpu_count() or 1) // local)


def mine_ranks(captions: Captions, scratch: str | os.PathLike[str], info: DistInfo, top_k: int = 30,
               max_sim: float = 0.5, chunk_size: int = 256, threads: int | None = None,
               progress: Progress | None = None) -> RankMining:
    """Mine the hard negatives of the captions over the ranks of ``info``: each rank reads its
    share, ``captions(rank, world_size)`` (``(docs, groups)``, see ``Captions``); ``scratch``: a
    folder for the shared arrays, on a file system every rank sees (replaced, then removed;
    unused by one process). ``progress`` shows rank 0's block."""
    if top_k < 1 or chunk_size < 1:
        raise ValueError("top_k and chunk_size must be >= 1")
    threads = threads or default_threads(info)
    options = dict(top_k=top_k, max_sim=max_sim, chunk_size=chunk_size, threads=threads, progress=progress)
    if not info.distributed:
        arrays = join_arrays(*captions(0, 1))
        rows, indices, sims, share = _mine_block(arrays, info, **options)
        return RankMining(*_in_caption_order(len(arrays["groups"]), [(rows, indices, sims)]), threads, [share])
    scratch = Path(scratch)
    try:
        arrays = _shared_arrays(captions, scratch, info)

        def mine_and_save() -> dict[str, Any]:
            rows, indices, sims, share = _mine_block(arrays, info, **options)
            np.save(scratch / f"rows-{info.rank}.npy", rows)
            np.save(scratch / f"indices-{info.rank}.npy", indices)
            np.save(scratch / f"sims-{info.rank}.npy", sims)
            return share

        share = on_every_rank(mine_and_save, info)
        shares = all_gather_json(share, info)
        if not info.is_main:
            return RankMining(None, None, threads, shares)
        blocks = [tuple(np.load(scratch / f"{name}-{r}.npy") for name in ("rows", "indices", "sims"))
                  for r in range(info.world_size)]
        return RankMining(*_in_caption_order(len(arrays["groups"]), blocks), threads, shares)
    finally:
        if info.is_main:
            shutil.rmtree(scratch, ignore_errors=True)


def _mine_block(arrays: dict[str, np.ndarray], info: DistInfo, top_k: int, max_sim: float, chunk_size: int,
                threads: int, progress: Progress | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """This rank's block of vectors, mined: its captions, their negatives; and its share for the report."""
    vectors = vector_blocks(arrays, info.world_size)[info.rank]
    captions = int(arrays["m_indptr"][vectors.stop] - arrays["m_indptr"][vectors.start])
    bar = progress("mining negatives", captions) if progress and info.is_main else nullcontext(None)
    t0, cpu0 = time.perf_counter(), time.process_time()
    with bar as advance:
        rows, indices, sims = mine_vectors(arrays, vectors, top_k, max_sim, chunk_size, advance, threads)
    share = {"rank": info.rank, "vectors": [vectors.start, vectors.stop], "handled": len(vectors),
             "captions": len(rows), "seconds": round(time.perf_counter() - t0, 3),
             "cpu_seconds": round(time.process_time() - cpu0, 3)}
    return rows, indices, sims, share


def _in_caption_order(n: int, blocks: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """The ``(rows, indices, sims)`` blocks of the ranks (together every caption once) as
    ``(indices, sims)`` with caption i's negatives in row i."""
    top_k = blocks[0][1].shape[1]
    indices, sims = np.full((n, top_k), -1, dtype=np.int64), np.zeros((n, top_k), dtype=np.float32)
    placed = np.zeros(n, dtype=np.int64)
    for rows, block_indices, block_sims in blocks:
        indices[rows], sims[rows] = block_indices, block_sims
        np.add.at(placed, rows, 1)
    if not (placed == 1).all():
        raise RuntimeError(f"the ranks' blocks hold {int((placed == 0).sum())} captions no times and "
                           f"{int((placed > 1).sum())} more than once; each must hold every caption once")
    return indices, sims


def _shared_arrays(captions: Captions, scratch: Path, info: DistInfo) -> dict[str, np.ndarray]:
    """The join inputs: every rank counts its share of the captions, rank 0 merges them and
    saves the arrays, every rank memory-maps them copy-on-write: never written, so one copy in
    the page cache for all; writable arrays, so the kernels compiled for in-memory arrays (and
    cached) serve them, where read-only ones would be compiled again in every process."""
    def clear() -> None:
        if info.is_main:
            shutil.rmtree(scratch, ignore_errors=True)  # a killed run's leftovers
            scratch.mkdir(parents=True)

    def count() -> None:
        docs, groups = captions(info.rank, info.world_size)
        counts = term_counts(docs)
        np.save(scratch / f"counts-indptr-{info.rank}.npy", counts.indptr)
        np.save(scratch / f"counts-cols-{info.rank}.npy", counts.cols)
        labels = groups.tolist() if isinstance(groups, np.ndarray) else None if groups is None else list(groups)
        (scratch / f"counts-{info.rank}.json").write_text(json.dumps({"terms": counts.terms, "groups": labels}), "utf-8")

    def merge() -> None:
        if info.is_main:
            parts, groups = _merged_shares(scratch, info.world_size)
            for name, array in join_arrays_of_counts(parts, groups).items():
                np.save(scratch / f"{name}.npy", array)

    for step in (clear, count, merge):
        on_every_rank(step, info)  # also the barrier: the files are complete
    return {name: np.load(scratch / f"{name}.npy", mmap_mode="c") for name in JOIN_ARRAYS}


def _merged_shares(scratch: Path, world_size: int) -> tuple[list[TermCounts], list | None]:
    """The ranks' term counts, in rank order, and their groups (``None`` when no rank has any)."""
    parts, groups = [], []
    for rank in range(world_size):
        share = json.loads((scratch / f"counts-{rank}.json").read_text("utf-8"))
        parts.append(TermCounts(share["terms"], np.load(scratch / f"counts-indptr-{rank}.npy"),
                                np.load(scratch / f"counts-cols-{rank}.npy")))
        groups.append(share["groups"])
    if all(g is None for g in groups):
        return parts, None
    if any(g is None for g in groups):
        raise ValueError("some ranks' captions have groups and some have none")
    return parts, [label for share in groups for label in share]
