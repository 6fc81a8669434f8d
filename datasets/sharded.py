"""A folder of store shards read as one store (``taomm prepare --shard I/N`` writes them).

Layout: ``STORE/shard-I-of-N/`` for I in 0..N-1, each a complete feature store. Ordinals
run through the shards in order (shard 0 first); splits and hard negatives are mapped
through the same offsets. Opening checks that the shards agree on language, feature
dimension and taxonomy, and that no item id appears in two shards.

Written by torchrun's ranks (rank R of N writes ``shard-R-of-N``), ``STORE/report.json`` is
the joint report (:func:`joint_report`): the counts summed over ranks, and ``ranks``, each
rank's share with its item ids as :func:`id_share` (count, SHA-256, first and last), which
:func:`check_shares` holds against the manifest's ids.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from taomm.datasets.prepare import PrepareReport, in_shard
from taomm.datasets.store import FeatureStore, Item, StoreError, StoreMeta, is_store, items_sha256

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

    def items_sha256(self) -> str:
        """What the shards hold as one store, whatever the sharding (:func:`items_sha256`): equal
        to a single store's prepared from the same input."""
        return items_sha256(self)

    def summary(self) -> dict[str, Any]:
        meta = self.meta.__dict__.copy()
        classes = meta.pop("classes")
        return {"path": str(self.path.resolve()), "items": len(self), "shards": len(self.shards),
                "meta": {**meta, "num_classes": len(classes)},
                "splits": {name: int(self.split(name).size) for name in self.split_names()},
                "content_sha256": self.content_sha256(), "items_sha256": self.items_sha256()}

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


def id_share(ids: Iterable[str]) -> dict[str, Any]:
    """Item ids as report.json keeps them: how many (distinct), the SHA-256 of their sorted JSON
    list, the first and the last."""
    ordered = sorted(set(ids))
    digest = hashlib.sha256(json.dumps(ordered, ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()
    return {"count": len(ordered), "sha256": digest, "first": ordered[0] if ordered else None,
            "last": ordered[-1] if ordered else None}


RANK_FIELDS = ("rank", "shard", "inputs", "ok", "quarantined", "written", "ids")


def joint_report(shares: list[dict[str, Any]]) -> dict[str, Any]:
    """The report of a store written by ranks: each share is a rank's :class:`PrepareReport`
    fields with ``rank`` and ``ids`` (:func:`id_share`); the counts, reasons and seconds are
    summed, and ``ranks`` lists the shares."""
    total, reasons, seconds = PrepareReport(), Counter(), Counter()
    for share in shares:
        total.inputs += share["inputs"]
        total.ok += share["ok"]
        total.quarantined += share["quarantined"]
        total.written += share["written"]
        reasons.update(share["reasons"])
        seconds.update(share["seconds"])
    total.reasons = dict(sorted(reasons.items()))
    total.seconds = {stage: round(s, 3) for stage, s in sorted(seconds.items())}
    return {**asdict(total), "world_size": len(shares),
            "ranks": [{name: share[name] for name in RANK_FIELDS} for share in sorted(shares, key=lambda s: s["rank"])]}


def check_shares(report: dict[str, Any], manifest_ids: Iterable[str]) -> list[str]:
    """What is wrong with a joint report's ``ranks`` against the manifest's item ids (empty:
    nothing): the shards must be 0/N to N-1/N, each once; each rank's ids exactly its shard's
    (so the shares are disjoint and cover every id); the counts must sum to the totals."""
    ids, ranks = set(manifest_ids), report["ranks"]
    problems = []
    if sorted(r["shard"] for r in ranks) != sorted(f"{i}/{len(ranks)}" for i in range(len(ranks))):
        problems.append(f"the ranks' shards are {[r['shard'] for r in ranks]}, not each of 0/N to N-1/N once")
    if (handled := sum(r["ids"]["count"] for r in ranks)) != len(ids):
        problems.append(f"the ranks handled {handled} ids in all; the manifest has {len(ids)}")
    for name in ("inputs", "ok", "quarantined", "written"):
        if (summed := sum(r[name] for r in ranks)) != report[name]:
            problems.append(f"the ranks' {name} sum to {summed}, the report says {report[name]}")
    for r in ranks:
        index, total = (int(x) for x in r["shard"].split("/"))
        if r["ids"] != id_share(i for i in ids if in_shard(i, index, total)):
            problems.append(f"rank {r['rank']}: its ids are not those of shard {r['shard']}")
    return problems


class SerialStore:
    """A feature store whose records are read by one thread at a time. The store reads
    through one LMDB read transaction per process, and LMDB allows a transaction to one
    thread at a time: two server threads reranking at once crashed the process (a segfault
    in a record's arrays). Other attributes pass through unchanged."""

    def __init__(self, store: Any) -> None:
        self._store, self._lock = store, threading.Lock()

    def __getitem__(self, ordinal: int) -> Any:
        with self._lock:
            return self._store[ordinal]

    def ordinal(self, item_id: str) -> int:
        with self._lock:
            return self._store.ordinal(item_id)

    def get(self, item_id: str) -> Any:
        with self._lock:
            return self._store.get(item_id)

    def __len__(self) -> int:
        return len(self._store)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
