"""A folder of store shards read as one store (``taomm prepare --shard I/N`` writes them).

Layout: ``STORE/shard-I-of-N/`` for I in 0..N-1, each a complete feature store. Ordinals
run through the shards in order (shard 0 first); splits and hard negatives are mapped
through the same offsets. Opening checks that the shards agree on language, feature
dimension and taxonomy, and that no item id appears in two shards.
"""

from __future__ import annotations

import hashlib
import os
import re
from bisect import bisect_right
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from taomm.datasets.store import FeatureStore, Item, StoreError, StoreMeta, is_store

SHARD_NAME = re.compile(r"^shard-(\d+)-of-(\d+)$")


def shard_folder(store: str | os.PathLike[str], index: int, total: int) -> Path:
    return Path(store) / f"shard-{index}-of-{total}"


def shard_paths(path: str | os.PathLike[str]) -> list[Path]:
    """The shard folders of ``path`` in order, or [] when it holds none."""
    found = {}
    folder = Path(path)
    if not folder.is_dir():
        return []
    for child in folder.iterdir():
        m = SHARD_NAME.match(child.name)
        if m and is_store(child):
            found[int(m.group(1))] = (int(m.group(2)), child)
    if not found:
        return []
    totals = {total for total, _ in found.values()}
    if len(totals) != 1 or sorted(found) != list(range(totals.pop())):
        raise StoreError(f"{folder}: incomplete or mixed shard set: {sorted(p.name for _, p in found.values())}")
    return [found[i][1] for i in sorted(found)]


class ShardedStore:
    """The read interface of :class:`FeatureStore` over several shards."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.shards = [FeatureStore(p) for p in shard_paths(self.path)]
        if not self.shards:
            raise StoreError(f"no store shards in {self.path}")
        first = self.shards[0].meta
        for shard in self.shards[1:]:
            for name in ("language", "feature_dim", "taxonomy", "classes"):
                if getattr(shard.meta, name) != getattr(first, name):
                    raise StoreError(f"{shard.path}: {name} differs from {self.shards[0].path}")
        self.offsets = np.cumsum([0] + [len(s) for s in self.shards]).tolist()
        seen: set[str] = set()
        for shard in self.shards:
            for item_id in shard.item_ids():
                if item_id in seen:
                    raise StoreError(f"item_id {item_id!r} is in more than one shard of {self.path}")
                seen.add(item_id)

    @property
    def meta(self) -> StoreMeta:
        first = self.shards[0].meta
        return StoreMeta(first.language, first.feature_dim, first.taxonomy, first.classes, count=len(self),
                         negatives=sum(s.meta.negatives for s in self.shards), tokenizer=first.tokenizer)

    def __len__(self) -> int:
        return self.offsets[-1]

    def _locate(self, ordinal: int) -> tuple[FeatureStore, int]:
        if not 0 <= ordinal < len(self):
            raise IndexError(f"ordinal {ordinal} out of range for a store of {len(self)} items")
        k = bisect_right(self.offsets, ordinal) - 1
        return self.shards[k], ordinal - self.offsets[k]

    def __getitem__(self, ordinal: int) -> Item:
        shard, local = self._locate(int(ordinal))
        return shard[local]

    def __iter__(self) -> Iterator[Item]:
        for shard in self.shards:
            yield from shard

    def ordinal(self, item_id: str) -> int:
        for offset, shard in zip(self.offsets, self.shards, strict=False):
            if item_id in shard:
                return offset + shard.ordinal(item_id)
        raise KeyError(item_id)

    def __contains__(self, item_id: str) -> bool:
        return any(item_id in shard for shard in self.shards)

    def get(self, item_id: str) -> Item:
        return self[self.ordinal(item_id)]

    def split_names(self) -> list[str]:
        return sorted({name for shard in self.shards for name in shard.split_names()})

    def split(self, name: str) -> np.ndarray:
        parts = [shard.split(name) + offset for offset, shard in zip(self.offsets, self.shards, strict=False)
                 if name in shard.split_names()]
        if not parts:
            raise StoreError(f"{self.path}: no split {name!r}")
        return np.concatenate(parts)

    def negatives(self, ordinal: int) -> np.ndarray:
        shard, local = self._locate(int(ordinal))
        k = self.shards.index(shard)
        return shard.negatives(local) + self.offsets[k]

    def content_sha256(self) -> str:
        """A hash over the shards' content hashes, in shard order."""
        digest = hashlib.sha256()
        for shard in self.shards:
            digest.update(shard.content_sha256().encode())
        return digest.hexdigest()

    def summary(self) -> dict[str, Any]:
        meta = self.meta.__dict__.copy()
        classes = meta.pop("classes")
        return {"path": str(self.path.resolve()), "items": len(self), "shards": len(self.shards),
                "meta": {**meta, "num_classes": len(classes)},
                "splits": {name: int(self.split(name).size) for name in self.split_names()},
                "content_sha256": self.content_sha256()}

    def close(self) -> None:
        for shard in self.shards:
            shard.close()

    def __enter__(self) -> ShardedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(path: str | os.PathLike[str]) -> FeatureStore | ShardedStore:
    """A store folder, or a folder of shards, for reading."""
    return FeatureStore(path) if is_store(path) or not shard_paths(path) else ShardedStore(path)
