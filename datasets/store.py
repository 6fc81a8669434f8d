"""The feature store: an LMDB folder of items (title, words, boxes, region features).

Data contract of one item (written once here, checked by :func:`validate_item`):

=============  ==============  ========================================================
field          dtype, shape    meaning
=============  ==============  ========================================================
item_id        str             unique id of the item (the store is idempotent on it)
title          str             cleaned title
word_ends      int32 (W,)      exclusive end offset (in characters) of each word of
                               ``title``; strictly increasing, the last equals len(title)
width, height  int             image size in pixels
boxes          float32 (N, 4)  ``x1, y1, x2, y2`` in pixels, ``0 <= x1 < x2 <= width``
features       float16 (N, D)  region features, D = the store's ``feature_dim``
labels         int32 (N,)      region class, an index into the store's taxonomy, or
                               -1 when unknown (imported features without classes;
                               masked region modeling skips those regions)
scores         float32 (N,)    detector confidence in [0, 1]
=============  ==============  ========================================================

LMDB layout (one environment, named databases, no pickle anywhere):

- ``meta``: ``b"meta"`` -> JSON of :class:`StoreMeta`.
- ``items``: ordinal as 8-byte big-endian (so key order is insertion order) -> record.
- ``ids``: item_id (UTF-8) -> ordinal (8-byte big-endian).
- ``splits``: split name -> int64 little-endian array of ordinals.
- ``negatives``: ordinal -> int64 little-endian array of hard-negative ordinals.

A record is a 32-byte header (magic ``TMR1``, N, D, W, width, height, id bytes, title
bytes; little-endian uint32) followed by boxes, scores, labels, word_ends, features,
item_id and title. Every array starts at a multiple of 4 bytes, so the reader returns
numpy views straight into LMDB's memory map (zero-copy, read-only).

The writer commits items in batches; a batch holds the new items *and* the new item
count, so a process killed at any point leaves a store holding exactly the batches that
committed, and rerunning the same input adds the rest in the same order: the result has
the same content as an uninterrupted run (:meth:`FeatureStore.content_sha256`).

One writer at a time: a writer holds :class:`StoreLock`, an exclusive ``flock`` on
``STORE/writer.lock`` (which records its pid); a second writer is refused at once with
one line. The OS drops the lock when the process ends, however it ends, so a killed
writer leaves no stale lock. Readers never take it. (Shards are separate stores, each
with its own lock, so ``prepare --shard I/N`` runs write side by side.)
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import operator
import os
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import numpy as np

from taomm.errors import StoreError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, writers are not guarded
    fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = 1
MAGIC = b"TMR1"
_HEADER = struct.Struct("<4s7I")  # magic, N, D, W, width, height, id_nbytes, title_nbytes
_DATABASES = (b"meta", b"ids", b"items", b"splits", b"negatives")
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_MAX_ID_BYTES = 256
_INITIAL_MAP_SIZE = 1 << 30  # grows by doubling on MapFullError
LOCK_NAME = "writer.lock"
T = TypeVar("T")


def _key(ordinal: int) -> bytes:
    return ordinal.to_bytes(8, "big")


@dataclass(frozen=True)
class Item:
    """One product: a cleaned title with its words, and its image regions.

    Arrays read from a store are read-only views into the store's memory map; they stay
    valid while the store is open. Copy them (``np.array(x)``) to modify them.
    """

    item_id: str
    title: str
    word_ends: np.ndarray  # (W,) int32
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float32, x1 y1 x2 y2 in pixels
    features: np.ndarray  # (N, D) float16
    labels: np.ndarray  # (N,) int32
    scores: np.ndarray  # (N,) float32

    @property
    def words(self) -> list[str]:
        ends = self.word_ends.tolist()
        return [self.title[a:b] for a, b in zip([0, *ends][: len(ends)], ends, strict=True)]

    @property
    def num_regions(self) -> int:
        return int(self.boxes.shape[0])


def word_ends_of(words: Sequence[str]) -> np.ndarray:
    """Exclusive end offsets of ``words`` in ``"".join(words)``."""
    return np.cumsum([len(w) for w in words], dtype=np.int64).astype(np.int32)


def image_key(item_id: str) -> str:
    """The photo of an item: ``IMAGE#K`` (the K-th caption of a photo, as the English dataset
    adapters name items) shares the photo ``IMAGE`` with ``IMAGE#0`` ...; any other id is its
    own photo. Retrieval evaluation, negatives and mining use it so that another caption of
    the same photo is never counted as a wrong answer."""
    return item_id.rsplit("#", 1)[0] if "#" in item_id else item_id


def main_region(item: Item) -> int | None:
    """The region that names an item's category: the largest box (pixel area) among the
    regions with a known class; a tie goes to the earlier, more confident, region; None when
    no region has a class. Area rather than confidence, as a listing photo frames its product
    large while the most confident detection can be a small accessory (a belt on a dress)."""
    known = np.flatnonzero(item.labels >= 0)
    if known.size == 0:
        return None
    boxes = item.boxes[known].astype(np.float64)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return int(known[int(np.argmax(area))])  # argmax keeps the first of equal areas


def validate_item(item: Item, feature_dim: int, num_classes: int) -> Item:
    """Check ``item`` against the data contract; return it with canonical dtypes."""
    where = f"item {item.item_id!r}"
    if not isinstance(item.item_id, str) or not item.item_id:
        raise StoreError("item_id must be a non-empty string")
    if len(item.item_id.encode("utf-8", "surrogatepass")) > _MAX_ID_BYTES:
        raise StoreError(f"{where}: item_id longer than {_MAX_ID_BYTES} bytes")
    if int(item.width) < 1 or int(item.height) < 1:
        raise StoreError(f"{where}: image size must be positive, got {item.width}x{item.height}")
    boxes = np.ascontiguousarray(item.boxes, dtype=np.float32).reshape(-1, 4)
    n = boxes.shape[0]
    features = np.ascontiguousarray(item.features, dtype=np.float16)
    if features.shape != (n, feature_dim):
        raise StoreError(f"{where}: features shape {features.shape}, expected ({n}, {feature_dim})")
    labels = np.ascontiguousarray(item.labels, dtype=np.int32).reshape(-1)
    scores = np.ascontiguousarray(item.scores, dtype=np.float32).reshape(-1)
    if labels.shape != (n,) or scores.shape != (n,):
        raise StoreError(f"{where}: labels {labels.shape} and scores {scores.shape} must be ({n},)")
    if not (np.isfinite(boxes).all() and np.isfinite(features).all() and np.isfinite(scores).all()):
        raise StoreError(f"{where}: boxes, features and scores must be finite")
    x1, y1, x2, y2 = boxes.T
    inside = (x1 >= 0) & (x1 < x2) & (x2 <= item.width) & (y1 >= 0) & (y1 < y2) & (y2 <= item.height)
    if not inside.all():
        raise StoreError(f"{where}: boxes must satisfy 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height")
    if ((labels < -1) | (labels >= num_classes)).any():
        raise StoreError(f"{where}: labels must be in [0, {num_classes}) or -1 (unknown)")
    if ((scores < 0) | (scores > 1)).any():
        raise StoreError(f"{where}: scores must be in [0, 1]")
    word_ends = np.ascontiguousarray(item.word_ends, dtype=np.int32).reshape(-1)
    if item.title and (word_ends.size == 0 or word_ends[-1] != len(item.title)):
        raise StoreError(f"{where}: the last word must end at len(title) = {len(item.title)}")
    if word_ends.size and (word_ends[0] <= 0 or (np.diff(word_ends) <= 0).any()):
        raise StoreError(f"{where}: word_ends must be positive and strictly increasing")
    return Item(item.item_id, item.title, word_ends, int(item.width), int(item.height),
                boxes, features, labels, scores)


def encode_item(item: Item) -> bytes:
    """Serialise a validated item into one record."""
    id_bytes = item.item_id.encode("utf-8", "surrogatepass")
    title_bytes = item.title.encode("utf-8", "surrogatepass")
    n, d = item.features.shape
    header = _HEADER.pack(MAGIC, n, d, item.word_ends.size, item.width, item.height,
                          len(id_bytes), len(title_bytes))
    return b"".join((header, item.boxes.tobytes(), item.scores.tobytes(), item.labels.tobytes(),
                     item.word_ends.tobytes(), item.features.tobytes(), id_bytes, title_bytes))


def decode_item(buf: Any) -> Item:
    """Parse a record; arrays are views into ``buf`` (zero-copy)."""
    magic, n, d, w, width, height, id_len, title_len = _HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise StoreError(f"corrupt record: bad magic {magic!r}")
    off = _HEADER.size
    boxes = np.frombuffer(buf, np.float32, 4 * n, off).reshape(n, 4)
    off += 16 * n
    scores = np.frombuffer(buf, np.float32, n, off)
    off += 4 * n
    labels = np.frombuffer(buf, np.int32, n, off)
    off += 4 * n
    word_ends = np.frombuffer(buf, np.int32, w, off)
    off += 4 * w
    features = np.frombuffer(buf, np.float16, n * d, off).reshape(n, d)
    off += 2 * n * d
    item_id = bytes(buf[off:off + id_len]).decode("utf-8", "surrogatepass")
    off += id_len
    title = bytes(buf[off:off + title_len]).decode("utf-8", "surrogatepass")
    return Item(item_id, title, word_ends, width, height, boxes, features, labels, scores)


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


# Lock descriptors held by this process: a forked child closes its copies, so that a child
# outliving the writer (a DataLoader worker) does not keep the store locked.
_HELD_LOCKS: set[int] = set()


def _close_inherited_locks() -> None:
    for fd in _HELD_LOCKS:
        with contextlib.suppress(OSError):
            os.close(fd)  # the child's descriptor only: the parent's lock stays
    _HELD_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


class StoreLock:
    """The single-writer lock of a store folder (see the module docstring): taken at
    construction, without waiting; :meth:`release` (or the end of the process) frees it.
    Locks are per open file, so a second writer in the same process is refused too."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        if fcntl is None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            who = "another writer of this process" if holder == str(os.getpid()) else "another process"
            raise StoreError(f"store {self.path.resolve()} is being written by {who} (pid {holder}); wait for it "
                             "to finish or write to another store") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        _HELD_LOCKS.add(fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            _HELD_LOCKS.discard(fd)
            os.close(fd)  # closing the only descriptor of the open file frees the flock

    def __enter__(self) -> StoreLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


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

    def summary(self) -> dict[str, Any]:
        """What `taomm inspect` shows: counts, metadata, split sizes and the content hash."""
        meta = asdict(self.meta)
        classes = meta.pop("classes")
        return {
            "path": str(self.path.resolve()),
            "items": len(self),
            "meta": {**meta, "num_classes": len(classes)},
            "splits": {name: int(self.split(name).size) for name in self.split_names()},
            "content_sha256": self.content_sha256(),
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
