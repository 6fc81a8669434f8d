"""The feature store: an LMDB folder of items (title, words, boxes, region features).

An item (its data contract, validator and record bytes) is defined in
:mod:`taomm.datasets.store_records`; its names are re-exported here.

LMDB layout (one environment, named databases, no pickle anywhere):

- ``meta``: ``b"meta"`` -> JSON of :class:`StoreMeta`.
- ``items``: ordinal as 8-byte big-endian (so key order is insertion order) -> record.
- ``ids``: item_id (UTF-8) -> ordinal (8-byte big-endian).
- ``splits``: split name -> int64 little-endian array of ordinals.
- ``negatives``: ordinal -> int64 little-endian array of hard-negative ordinals.

The writer commits items in batches; a batch holds the new items *and* the new item
count, so a process killed at any point leaves a store holding exactly the batches that
committed, and rerunning the same input adds the rest in the same order: the result has
the same content as an uninterrupted run (:meth:`FeatureStore.content_sha256`).

One writer at a time: a writer holds :class:`~taomm.datasets.store_lock.StoreLock` (an
exclusive ``flock`` on ``STORE/writer.lock``); a second writer is refused at once with one
line. Readers never take it. (Shards are separate stores, each with its own lock, so
``prepare --shard I/N`` runs write side by side.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import operator
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import numpy as np

from taomm.datasets.store_lock import LOCK_NAME, StoreLock
from taomm.datasets.store_records import (
    MAGIC,
    Item,
    decode_item,
    encode_item,
    image_key,
    main_region,
    validate_item,
    word_ends_of,
)
from taomm.errors import StoreError

__all__ = [
    "LOCK_NAME", "MAGIC", "SCHEMA_VERSION", "FeatureStore", "Item", "StoreError", "StoreLock", "StoreMeta",
    "StoreWriter", "decode_item", "encode_item", "image_key", "is_store", "main_region", "validate_item",
    "word_ends_of",
]

SCHEMA_VERSION = 1
_DATABASES = (b"meta", b"ids", b"items", b"splits", b"negatives")
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_INITIAL_MAP_SIZE = 1 << 30  # grows by doubling on MapFullError
T = TypeVar("T")


def _key(ordinal: int) -> bytes:
    return ordinal.to_bytes(8, "big")


@dataclass
class StoreMeta:
    """Store-wide metadata: what the records mean and how many there are."""

    language: str
    feature_dim: int  # D of every item's region features
    taxonomy: str  # name of the region-class taxonomy, e.g. "taobao33"
    classes: list[str]  # class names; a label is an index into this list
    count: int = 0  # items in the store (= next ordinal)
    negatives: int = 0  # items with mined hard negatives
    tokenizer: dict[str, Any] | None = None  # tokenizer the store's titles were built for
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes, path: Path) -> StoreMeta:
        data = json.loads(bytes(raw).decode("utf-8"))
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise StoreError(f"{path}: store schema version {version}, this taomm reads version {SCHEMA_VERSION}")
        return cls(**data)


def _open_env(path: Path, *, readonly: bool, map_size: int = _INITIAL_MAP_SIZE) -> lmdb.Environment:
    if readonly:
        # No lock file: readers never block or register; stores are read only once written.
        return lmdb.open(str(path), readonly=True, lock=False, readahead=False,
                         max_dbs=len(_DATABASES), subdir=True)
    path.mkdir(parents=True, exist_ok=True)
    return lmdb.open(str(path), map_size=map_size, max_dbs=len(_DATABASES), subdir=True,
                     readahead=False, meminit=False)


def is_store(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / "data.mdb").is_file()


class StoreWriter:
    """Appends items to a store in batched transactions; idempotent by ``item_id``.

    Use as a context manager; buffered items are committed on exit. Creating a writer on
    an existing store checks that language, feature dimension and taxonomy agree. The
    writer takes the store's :class:`StoreLock` (refused while another writer holds it),
    or uses ``lock``, one its caller took earlier on the same folder and releases itself.
    """

    def __init__(self, path: str | os.PathLike[str], *, language: str, feature_dim: int,
                 taxonomy: str, classes: Sequence[str], batch_size: int = 256,
                 map_size: int = _INITIAL_MAP_SIZE, lock: StoreLock | None = None) -> None:
        self.path = Path(path)
        self.batch_size = batch_size
        self.added = 0  # items written by this writer
        self.skipped = 0  # items whose item_id was already in the store
        self._pending: list[Item] = []
        self._env = None
        if self.path.resolve() in _READERS and os.getpid() == _READERS_PID:
            raise StoreError(f"{self.path} is open for reading in this process: close it before writing")
        if lock is not None and lock.path.resolve() != self.path.resolve():
            raise StoreError(f"the lock of {lock.path} does not guard {self.path}")
        self._own_lock = StoreLock(self.path) if lock is None else None
        try:
            self._open(map_size, language, feature_dim, taxonomy, classes)
        except BaseException:
            self.close()
            raise

    def _open(self, map_size: int, language: str, feature_dim: int, taxonomy: str, classes: Sequence[str]) -> None:
        self._env = _open_env(self.path, readonly=False, map_size=map_size)
        self._dbs = {name: self._env.open_db(name) for name in _DATABASES}
        wanted = StoreMeta(language, int(feature_dim), taxonomy, list(classes))
        with self._env.begin(write=True) as txn:
            raw = txn.get(b"meta", db=self._dbs[b"meta"])
            if raw is None:
                txn.put(b"meta", wanted.to_json(), db=self._dbs[b"meta"])
                self.meta = wanted
            else:
                self.meta = StoreMeta.from_json(raw, self.path)
                for name in ("language", "feature_dim", "taxonomy", "classes"):
                    have, want = getattr(self.meta, name), getattr(wanted, name)
                    if have != want:
                        shown = "a different class list" if name == "classes" else repr(want)
                        raise StoreError(f"{self.path}: store has {name} {have!r}, cannot add items with {shown}")

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __contains__(self, item_id: str) -> bool:
        with self._env.begin() as txn:
            return txn.get(item_id.encode("utf-8", "surrogatepass"), db=self._dbs[b"ids"]) is not None

    def add(self, item: Item) -> None:
        """Queue one item (validated now); commits when a batch is full."""
        self._pending.append(validate_item(item, self.meta.feature_dim, len(self.meta.classes)))
        if len(self._pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Commit the queued items and the new count in one transaction."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        self.meta, added, skipped = self._write(lambda txn: self._put_items(txn, batch))
        self.added += added
        self.skipped += skipped

    def _read_meta(self, txn: lmdb.Transaction) -> StoreMeta:
        return StoreMeta.from_json(txn.get(b"meta", db=self._dbs[b"meta"]), self.path)

    def _put_items(self, txn: lmdb.Transaction, batch: list[Item]) -> tuple[StoreMeta, int, int]:
        meta = self._read_meta(txn)
        added = skipped = 0
        for item in batch:
            key = _key(meta.count)
            if not txn.put(item.item_id.encode("utf-8", "surrogatepass"), key,
                           db=self._dbs[b"ids"], overwrite=False):
                skipped += 1
                continue
            txn.put(key, encode_item(item), db=self._dbs[b"items"], append=True)
            meta.count += 1
            added += 1
        txn.put(b"meta", meta.to_json(), db=self._dbs[b"meta"])
        return meta, added, skipped

    def _write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn`` in one write transaction, doubling the map size while it is full."""
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                # The transaction was aborted: nothing of it is in the store. Retry bigger.
                self._env.set_mapsize(self._env.info()["map_size"] * 2)

    def ordinals(self, item_ids: Iterable[str]) -> np.ndarray:
        """Ordinals of ``item_ids`` (all must be in the store)."""
        self.flush()
        out = []
        with self._env.begin() as txn:
            for item_id in item_ids:
                raw = txn.get(item_id.encode("utf-8", "surrogatepass"), db=self._dbs[b"ids"])
                if raw is None:
                    raise StoreError(f"{self.path}: unknown item_id {item_id!r}")
                out.append(int.from_bytes(raw, "big"))
        return np.asarray(out, dtype=np.int64)

    def set_split(self, name: str, item_ids: Iterable[str]) -> None:
        """Record the split ``name`` (train, val, test ...) as the given items, in order."""
        if not _SPLIT_NAME.match(name):
            raise StoreError(f"invalid split name {name!r}")
        ordinals = self.ordinals(item_ids).astype("<i8")

        self._write(lambda txn: txn.put(name.encode(), ordinals.tobytes(), db=self._dbs[b"splits"]))

    def set_negatives(self, pairs: Iterable[tuple[int, np.ndarray]]) -> None:
        """Store hard-negative ordinals per item ordinal (replacing earlier ones)."""
        self.flush()

        def put(txn: lmdb.Transaction) -> StoreMeta:
            meta = self._read_meta(txn)
            db = self._dbs[b"negatives"]
            for ordinal, negs in pairs:
                if not 0 <= ordinal < meta.count:
                    raise StoreError(f"negatives for unknown ordinal {ordinal}")
                negs = np.asarray(negs, dtype="<i8").reshape(-1)
                if negs.size and (negs.min() < 0 or negs.max() >= meta.count):
                    raise StoreError(f"negatives of ordinal {ordinal} point outside the store")
                txn.put(_key(int(ordinal)), negs.tobytes(), db=db)
            meta.negatives = txn.stat(db)["entries"]
            txn.put(b"meta", meta.to_json(), db=self._dbs[b"meta"])
            return meta

        self.meta = self._write(put)

    def set_tokenizer(self, info: dict[str, Any]) -> None:
        """Record which tokenizer the store's titles are meant for (JSON-serialisable)."""
        self.flush()

        def put(txn: lmdb.Transaction) -> StoreMeta:
            meta = self._read_meta(txn)
            meta.tokenizer = json.loads(json.dumps(info))
            txn.put(b"meta", meta.to_json(), db=self._dbs[b"meta"])
            return meta

        self.meta = self._write(put)

    def close(self) -> None:
        try:
            if self._env is not None:
                try:
                    self.flush()
                finally:
                    self._env.close()
                    self._env = None
        finally:
            if self._own_lock is not None:
                self._own_lock.release()


@dataclass
class _Handle:
    """One process's read-only environment of a store, shared by its FeatureStore objects."""

    pid: int
    env: lmdb.Environment
    txn: lmdb.Transaction
    dbs: dict[bytes, Any] = field(default_factory=dict)
    users: int = 0


# LMDB forbids opening one environment twice in a process, so readers share a handle per
# store folder. After a fork the parent's handles are closed in the child (which leaves the
# parent's untouched) and reopened on first use.
_READERS: dict[Path, _Handle] = {}
_READERS_PID = os.getpid()


def _reader_handle(path: Path) -> _Handle:
    global _READERS_PID
    if os.getpid() != _READERS_PID:
        for stale in _READERS.values():
            with contextlib.suppress(lmdb.Error):
                stale.env.close()
        _READERS.clear()
        _READERS_PID = os.getpid()
    key = path.resolve()
    handle = _READERS.get(key)
    if handle is None:
        env = _open_env(key, readonly=True)
        dbs = {name: env.open_db(name, create=False) for name in _DATABASES}
        handle = _READERS[key] = _Handle(os.getpid(), env, env.begin(buffers=True), dbs)
    return handle


class FeatureStore:
    """Read-only access to a store: ``len(store)``, ``store[i]``, ``store.get(item_id)``.

    The LMDB environment is opened lazily, once per process and store folder, so a store
    object can be handed to DataLoader workers under both ``fork`` and ``spawn``. Items are
    decoded zero-copy from one long-lived read transaction: their arrays are valid until
    the last FeatureStore of that folder in this process is closed (copy them to keep them
    longer). Open stores are read only once written: no writer may run at the same time.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not is_store(self.path):
            raise StoreError(f"no feature store at {self.path} (no data.mdb there)")
        self._handle: _Handle | None = None
        self._meta: StoreMeta | None = None

    def _open(self) -> _Handle:
        handle = self._handle
        if handle is None or handle.pid != os.getpid():
            handle = self._handle = _reader_handle(self.path)
            handle.users += 1
        return handle

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_handle": None, "_meta": self._meta}

    @property
    def meta(self) -> StoreMeta:
        if self._meta is None:
            h = self._open()
            self._meta = StoreMeta.from_json(h.txn.get(b"meta", db=h.dbs[b"meta"]), self.path)
        return self._meta

    def __len__(self) -> int:
        return self.meta.count

    def __getitem__(self, ordinal: int) -> Item:
        ordinal = operator.index(ordinal)
        h = self._handle if self._handle is not None and self._handle.pid == os.getpid() else self._open()
        buf = h.txn.get(_key(ordinal), db=h.dbs[b"items"]) if ordinal >= 0 else None
        if buf is None:
            raise IndexError(f"ordinal {ordinal} out of range for a store of {len(self)} items")
        return decode_item(buf)

    def __iter__(self) -> Iterator[Item]:
        h = self._open()
        with h.txn.cursor(db=h.dbs[b"items"]) as cursor:
            for _, value in cursor:
                yield decode_item(value)

    def item_ids(self) -> Iterator[str]:
        """Every item id (from the id index: no record is decoded), in id order."""
        h = self._open()
        with h.txn.cursor(db=h.dbs[b"ids"]) as cursor:
            for key in cursor.iternext(keys=True, values=False):
                yield bytes(key).decode("utf-8", "surrogatepass")

    def ordinal(self, item_id: str) -> int:
        h = self._open()
        raw = h.txn.get(item_id.encode("utf-8", "surrogatepass"), db=h.dbs[b"ids"])
        if raw is None:
            raise KeyError(item_id)
        return int.from_bytes(raw, "big")

    def __contains__(self, item_id: str) -> bool:
        try:
            self.ordinal(item_id)
        except KeyError:
            return False
        return True

    def get(self, item_id: str) -> Item:
        return self[self.ordinal(item_id)]

    def split_names(self) -> list[str]:
        h = self._open()
        with h.txn.cursor(db=h.dbs[b"splits"]) as cursor:
            return [bytes(k).decode() for k in cursor.iternext(keys=True, values=False)]

    def split(self, name: str) -> np.ndarray:
        """Ordinals of the split ``name`` (int64)."""
        h = self._open()
        raw = h.txn.get(name.encode(), db=h.dbs[b"splits"])
        if raw is None:
            known = ", ".join(self.split_names()) or "none"
            raise StoreError(f"{self.path}: no split {name!r} (splits: {known})")
        return np.frombuffer(raw, dtype="<i8")

    def negatives(self, ordinal: int) -> np.ndarray:
        """Hard-negative ordinals of the item (empty when none were mined)."""
        h = self._open()
        raw = h.txn.get(_key(operator.index(ordinal)), db=h.dbs[b"negatives"])
        return np.empty(0, dtype="<i8") if raw is None else np.frombuffer(raw, dtype="<i8")

    def content_sha256(self) -> str:
        """SHA-256 over every record of every database in key order.

        Two stores with the same items, order, splits, negatives and metadata hash alike,
        however (and however often) their writing was interrupted.
        """
        h = self._open()
        digest = hashlib.sha256()
        for name in _DATABASES:
            digest.update(len(name).to_bytes(8, "little") + name)
            with h.txn.cursor(db=h.dbs[name]) as cursor:
                for key, value in cursor:
                    digest.update(len(key).to_bytes(8, "little"))
                    digest.update(key)
                    digest.update(len(value).to_bytes(8, "little"))
                    digest.update(value)
        return digest.hexdigest()

    def items_sha256(self) -> str:
        """:func:`items_sha256` of this store."""
        return items_sha256(self)

    def summary(self) -> dict[str, Any]:
        """What `taomm inspect` shows: counts, metadata, split sizes and the content hashes."""
        meta = asdict(self.meta)
        classes = meta.pop("classes")
        return {
            "path": str(self.path.resolve()),
            "items": len(self),
            "meta": {**meta, "num_classes": len(classes)},
            "splits": {name: int(self.split(name).size) for name in self.split_names()},
            "content_sha256": self.content_sha256(),
            "items_sha256": self.items_sha256(),
        }

    def close(self) -> None:
        """Release this object's use of the environment; the last user closes it."""
        handle, self._handle = self._handle, None
        if handle is not None and handle.pid == os.getpid():
            handle.users -= 1
            if handle.users == 0:
                _READERS.pop(self.path.resolve(), None)
                handle.txn.abort()
                handle.env.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def items_sha256(store: Any) -> str:
    """SHA-256 of what a store holds, whatever its order or sharding: every item (id, title,
    words, size, boxes, features, labels, scores) in item-id order, each split as its sorted
    item ids, and the language, feature dimension and taxonomy. A store prepared in one
    process and the shards torchrun's ranks prepared from the same input hash alike (their
    ``content_sha256`` differ: it hashes records in insertion order, and shards one by one).
    Hard negatives are left out: they are mined after ``prepare``."""
    digests = []
    for item in store:
        h = hashlib.sha256()
        for part in (item.item_id.encode("utf-8", "surrogatepass"), item.title.encode("utf-8", "surrogatepass"),
                     np.asarray([item.width, item.height], "<i8").tobytes(),
                     *(np.ascontiguousarray(a).tobytes() for a in (item.word_ends, item.boxes, item.features,
                                                                   item.labels, item.scores))):
            h.update(len(part).to_bytes(8, "little") + part)
        digests.append((item.item_id, h.digest()))
    total = hashlib.sha256()
    for _, digest in sorted(digests, key=lambda pair: pair[0]):
        total.update(digest)
    meta, ids = store.meta, [item_id for item_id, _ in digests]  # ordinal order
    splits = {name: sorted(ids[int(o)] for o in store.split(name)) for name in store.split_names()}
    total.update(json.dumps({"language": meta.language, "feature_dim": meta.feature_dim, "taxonomy": meta.taxonomy,
                             "classes": list(meta.classes), "splits": splits}, ensure_ascii=False).encode())
    return total.hexdigest()
