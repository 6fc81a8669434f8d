"""A feature store's TF-IDF hard negatives: mined over its captions, written into it.

The store owns this step (not :mod:`taomm.text.mining`) so that the text layer never reads
or writes a store: mining works on any captions, this module feeds it a store's and groups
the captions of one photo. Importing it imports numba (about a second): import it where
the negatives are mined, not at a command's start.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from taomm.datasets.store import FeatureStore, StoreWriter, image_key
from taomm.text.mining import mine_hard_negatives
from taomm.text.mining_ranks import Progress, RankMining, mine_ranks
from taomm.train.distributed import DistInfo, row_share

# The ranks' shared arrays while they mine a store, removed at the end.
SCRATCH = "mining.tmp"


def mine_store_negatives(path: str | os.PathLike[str], top_k: int = 30, max_sim: float = 0.5, chunk_size: int = 256,
                         on_progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Mine the hard negatives of every item of the feature store at ``path`` and write them
    into it; captions of one photo (``IMAGE#K``) are not each other's negatives. Returns the
    ``(N, top_k)`` indices (-1 padded)."""
    indices, _ = mine_hard_negatives(*store_captions(path), top_k=top_k, max_sim=max_sim, chunk_size=chunk_size,
                                     on_progress=on_progress)
    write_store_negatives(path, indices)
    return indices


def mine_store_negatives_ranks(path: str | os.PathLike[str], info: DistInfo, top_k: int = 30, max_sim: float = 0.5,
                               chunk_size: int = 256, threads: int | None = None,
                               progress: Progress | None = None) -> RankMining:
    """:func:`mine_store_negatives` over the ranks of a torchrun group
    (:func:`~taomm.text.mining_ranks.mine_ranks`, its shared arrays in ``STORE/mining.tmp``);
    rank 0 writes the negatives. One process: the same, alone."""
    mined = mine_ranks(lambda part, parts: store_captions(path, part, parts), Path(path) / SCRATCH, info, top_k=top_k, max_sim=max_sim,
                       chunk_size=chunk_size, threads=threads, progress=progress)
    if mined.indices is not None:
        write_store_negatives(path, mined.indices)
    return mined


def store_captions(path: str | os.PathLike[str], part: int = 0, parts: int = 1) -> tuple[list[list[str]], list[str]]:
    """The store's captions (segmented words) and their groups, the photo of each (``IMAGE``
    of ``IMAGE#K``); of the ``part``-th of ``parts`` contiguous shares of its items."""
    docs, photos = [], []
    with FeatureStore(path) as fs:  # an item reads the store's memory: used while it is open
        for i in row_share(len(fs), part, parts):
            item = fs[i]
            docs.append(item.words)
            photos.append(image_key(item.item_id))
    return docs, photos


def write_store_negatives(path: str | os.PathLike[str], indices: np.ndarray) -> None:
    """Write mined ``indices`` (-1 padded rows) as the store's negatives."""
    with FeatureStore(path) as fs:
        meta = fs.meta
    with StoreWriter(path, language=meta.language, feature_dim=meta.feature_dim, taxonomy=meta.taxonomy,
                     classes=meta.classes) as writer:
        writer.set_negatives((i, row[row >= 0]) for i, row in enumerate(indices))
