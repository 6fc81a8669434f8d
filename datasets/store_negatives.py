"""A feature store's TF-IDF hard negatives: mined over its captions, written into it.

The store owns this step (not :mod:`taomm.text.mining`) so that the text layer never reads
or writes a store: mining works on any captions, this module feeds it a store's and groups
the captions of one photo. Importing it imports numba (about a second): import it where
the negatives are mined, not at a command's start.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from taomm.datasets.store import FeatureStore, StoreWriter, image_key
from taomm.text.mining import mine_hard_negatives


def mine_store_negatives(path: str | os.PathLike[str], top_k: int = 30, max_sim: float = 0.5, chunk_size: int = 256,
                         on_progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Mine the hard negatives of every item of the feature store at ``path`` and write them
    into it; captions of one photo (``IMAGE#K``) are not each other's negatives. Returns the
    ``(N, top_k)`` indices (-1 padded)."""
    with FeatureStore(path) as fs:
        meta = fs.meta
        docs = [item.words for item in fs]
        photos: dict[str, int] = {}
        groups = [photos.setdefault(image_key(item_id), len(photos)) for item_id in fs.item_ids()]
    indices, _ = mine_hard_negatives(docs, groups, top_k=top_k, max_sim=max_sim, chunk_size=chunk_size,
                                     on_progress=on_progress)
    with StoreWriter(path, language=meta.language, feature_dim=meta.feature_dim, taxonomy=meta.taxonomy,
                     classes=meta.classes) as writer:
        writer.set_negatives((i, row[row >= 0]) for i, row in enumerate(indices))
    return indices
