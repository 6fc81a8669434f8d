"""Hard-negative mining split over the ranks of a torchrun group (one process: plain mining).

- Rank 0 alone reads the captions and builds the join inputs once
  (:func:`~taomm.text.mining.join_arrays`: the TF-IDF matrix, its transpose, the common-term
  split, the groups), saved as ``.npy`` files in a scratch folder that every rank can read.
- After a barrier every rank memory-maps them (``np.load(mmap_mode="r")``: one copy in the
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

from taomm.text.mining import JOIN_ARRAYS, join_arrays, mine_vectors, vector_blocks
from taomm.train.distributed import DistInfo, all_gather_json, on_every_rank

Progress = Callable[[str, int | None], AbstractContextManager[Callable[[int], None]]]
Captions = Callable[[], tuple[Sequence[Sequence[str]], Sequence[int] | np.ndarray | None]]

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
    """Mine the hard negatives of ``captions()`` (``(docs, groups)``, called on rank 0 only) over
    the ranks of ``info``; ``scratch``: a folder for the shared arrays, on a file system every
    rank sees (replaced, then removed; unused by one process). ``progress`` shows rank 0's block."""
    if top_k < 1 or chunk_size < 1:
        raise ValueError("top_k and chunk_size must be >= 1")
    threads = threads or default_threads(info)
    options = dict(top_k=top_k, max_sim=max_sim, chunk_size=chunk_size, threads=threads, progress=progress)
    if not info.distributed:
        arrays = join_arrays(*captions())
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
    """The join inputs, built and saved by rank 0, memory-mapped read-only by every rank."""
    def build() -> None:
        if info.is_main:
            shutil.rmtree(scratch, ignore_errors=True)  # a killed run's leftovers
            scratch.mkdir(parents=True)
            for name, array in join_arrays(*captions()).items():
                np.save(scratch / f"{name}.npy", array)

    on_every_rank(build, info)  # also the barrier: the files are complete
    return {name: np.load(scratch / f"{name}.npy", mmap_mode="r") for name in JOIN_ARRAYS}
