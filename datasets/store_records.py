"""One item of the feature store (:mod:`taomm.datasets.store`): its contract and its bytes.

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

A record is a 32-byte header (magic ``TMR1``, N, D, W, width, height, id bytes, title
bytes; little-endian uint32) followed by boxes, scores, labels, word_ends, features,
item_id and title. Every array starts at a multiple of 4 bytes, so the reader returns
numpy views straight into LMDB's memory map (zero-copy, read-only).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from taomm.errors import StoreError

MAGIC = b"TMR1"
_HEADER = struct.Struct("<4s7I")  # magic, N, D, W, width, height, id_nbytes, title_nbytes
MAX_ID_BYTES = 256


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
    if len(item.item_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise StoreError(f"{where}: item_id longer than {MAX_ID_BYTES} bytes")
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
