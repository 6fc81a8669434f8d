"""Readers and writers for pre-extracted region features (``taomm prepare --features TSV``).

Two public formats, both tab-separated text with one image per line and numpy arrays as
base64 of their raw little-endian bytes:

- **bottom-up** (Anderson et al.'s bottom-up-attention, used by ViLBERT, VL-BERT, LXMERT).
  No header. The original six fields (:data:`BOTTOM_UP_FIELDS`)::

      image_id  image_w  image_h  num_boxes  boxes  features

  LXMERT's release has ten (:data:`LXMERT_FIELDS`), note ``img_h`` *before* ``img_w``::

      img_id  img_h  img_w  objects_id  objects_conf  attrs_id  attrs_conf  num_boxes  boxes  features

- **kdd2020** (KDD Cup 2020 Multimodalities Recall, Taobao). A header row names the
  columns (:data:`KDD2020_FIELDS`), again height before width::

      product_id  image_h  image_w  num_boxes  boxes  features  class_labels  query  query_id

Arrays: ``boxes`` float32 (N, 4) ``x1, y1, x2, y2`` in pixels; ``features`` float32 (N, D);
``objects_id``/``attrs_id``/``class_labels`` int64 (N,); ``objects_conf``/``attrs_conf``
float32 (N,).

This module is the boundary where foreign data enters taomm, so every row is checked
here: sizes are integers (width, height >= 1, num_boxes >= 0), base64 is strict, every
array holds exactly ``num_boxes`` rows, values are finite, scores lie in [0, 1] and labels
are >= -1. Boxes are clipped into the image and boxes left empty by the clipping are
dropped together with their feature, label and score, so every :class:`ForeignRecord`
satisfies the store's contract ``0 <= x1 < x2 <= width``, ``0 <= y1 < y2 <= height``.

A bad row never stops a reader: it yields a :class:`ForeignFormatError` with the 1-based
line number and goes on, and the caller quarantines it. Readers raise only for a file
that cannot be opened (``OSError``) or whose format cannot be told
(:class:`ForeignFormatError`). They stream: memory is bounded by one line, and a line over
:data:`MAX_LINE_BYTES` is reported as a bad row without being held in memory.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np

from taomm.errors import TaommError

BOTTOM_UP = "bottom-up"
KDD2020 = "kdd2020"
BOTTOM_UP_FIELDS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")
LXMERT_FIELDS = ("img_id", "img_h", "img_w", "objects_id", "objects_conf",
                 "attrs_id", "attrs_conf", "num_boxes", "boxes", "features")
KDD2020_FIELDS = ("product_id", "image_h", "image_w", "num_boxes", "boxes", "features",
                  "class_labels", "query", "query_id")
# 100 boxes x 2048 float32 features are ~1.1 MB of base64; this leaves room for any real
# release while keeping a file without newlines from being read into memory whole.
MAX_LINE_BYTES = 256 << 20

# Column names as the releases spell them -> the role taomm reads them for.
_ROLES = {
    "image_id": "id", "img_id": "id", "product_id": "id",
    "image_w": "width", "img_w": "width",
    "image_h": "height", "img_h": "height",
    "num_boxes": "num_boxes", "boxes": "boxes", "features": "features",
    "objects_id": "labels", "class_labels": "labels", "objects_conf": "scores",
    "attrs_id": "attr_labels", "attrs_conf": "attr_scores",
    "query": "caption", "query_id": "caption_id",
}
_REQUIRED_ROLES = ("id", "width", "height", "num_boxes", "boxes", "features")
_F32 = np.dtype("<f4")
_I64 = np.dtype("<i8")


@dataclass(frozen=True, eq=False)
class ForeignRecord:
    """One image's regions as read from (or written to) a foreign feature file.

    ``__eq__`` compares every field, arrays by value, so round trips can be asserted.
    """

    image_id: str  # image_id / img_id / product_id, as text
    width: int  # image size in pixels (>= 1)
    height: int
    boxes: np.ndarray  # (N, 4) float32, x1 y1 x2 y2 in pixels, 0 <= x1 < x2 <= width etc.
    features: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) int64, -1 where the file has no class labels
    scores: np.ndarray  # (N,) float32, 1.0 where the file has no confidences
    caption: str | None = None  # KDD ``query``; None for bottom-up files
    caption_id: str | None = None  # KDD ``query_id``

    @property
    def num_regions(self) -> int:
        return int(self.boxes.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ForeignRecord):
            return NotImplemented
        same_scalars = (self.image_id, self.width, self.height, self.caption, self.caption_id) == (
            other.image_id, other.width, other.height, other.caption, other.caption_id)
        return same_scalars and all(
            a.shape == b.shape and np.array_equal(a, b)
            for a, b in ((self.boxes, other.boxes), (self.features, other.features),
                         (self.labels, other.labels), (self.scores, other.scores)))


class ForeignFormatError(TaommError, ValueError):
    """A row (or a whole file) that does not follow its format; ``line`` is 1-based."""

    def __init__(self, line: int, reason: str, path: str | os.PathLike[str] | None = None):
        self.line = line
        self.reason = reason
        self.path = None if path is None else os.fspath(path)
        where = f"{self.path}:{line}" if self.path is not None else f"line {line}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):  # keep it picklable for multiprocessing despite the custom __init__
        return type(self), (self.line, self.reason, self.path)


class _BadRow(Exception):
    """Raised inside row parsing; the reader turns it into a yielded ForeignFormatError."""


# ---------------------------------------------------------------------------- lines


def _lines(f: IO[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """Yield ``(line_number, line)`` without its newline; ``None`` for an over-long line."""
    number = 0
    while True:
        line = f.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # skip the rest without keeping it
                line = f.readline(1 << 20)
            yield number, None
            continue
        yield number, line.rstrip(b"\r\n")


def _first_line(path: str | os.PathLike[str]) -> tuple[int, bytes]:
    """The first non-blank line of ``path`` and its number; ``(0, b"")`` for an empty file."""
    with open(path, "rb") as f:
        for number, line in _lines(f):
            if line is None:
                raise ForeignFormatError(number, f"line longer than {MAX_LINE_BYTES} bytes", path)
            if line.strip():
                return number, line
    return 0, b""


def _looks_like_header(fields: Sequence[bytes]) -> bool:
    return bool(fields) and fields[0].strip().decode("utf-8", "replace") in _ROLES


def sniff_format(path: str | os.PathLike[str]) -> str:
    """Tell a file's format from its first line: ``"bottom-up"`` or ``"kdd2020"``.

    A header naming ``product_id`` or a headerless line of 9 fields is KDD 2020; a
    headerless line of 6 or 10 fields is bottom-up. Raises :class:`ForeignFormatError`
    for anything else, an empty file included, and ``OSError`` if it cannot be read.
    """
    number, line = _first_line(path)
    if not number:
        raise ForeignFormatError(1, "empty file: cannot tell its format", path)
    fields = line.split(b"\t")
    if _looks_like_header(fields):
        names = {f.strip().decode("utf-8", "replace") for f in fields}
        if "product_id" in names:
            return KDD2020
        raise ForeignFormatError(number, f"unknown header {sorted(names)}", path)
    if len(fields) == len(KDD2020_FIELDS):
        return KDD2020
    if len(fields) in (len(BOTTOM_UP_FIELDS), len(LXMERT_FIELDS)):
        return BOTTOM_UP
    raise ForeignFormatError(
        number, f"unknown format: {len(fields)} tab-separated fields, expected 6 or 10 "
        f"(bottom-up) or 9 (KDD 2020)", path)


# ---------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class _Layout:
    """Where each role sits in a row."""

    num_fields: int
    index: dict[str, int]  # role -> column


def _layout(fieldnames: Sequence[str], *, lenient: bool) -> _Layout:
    """Map column names to roles; unknown names are allowed (and ignored) when ``lenient``."""
    index: dict[str, int] = {}
    for column, name in enumerate(fieldnames):
        role = _ROLES.get(name)
        if role is None:
            if lenient:
                continue
            raise ValueError(f"unknown field name {name!r}; known: {sorted(_ROLES)}")
        if role in index:
            raise ValueError(f"two fields give the {role!r} of a row: {list(fieldnames)}")
        index[role] = column
    missing = [r for r in _REQUIRED_ROLES if r not in index]
    if missing:
        raise ValueError(f"fieldnames {list(fieldnames)} lack {missing}")
    return _Layout(len(fieldnames), index)


# ---------------------------------------------------------------------------- row parsing


def _text(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _BadRow(f"{name} is not UTF-8 ({e.reason} at byte {e.start})") from None


def _shown(raw: bytes) -> str:
    return repr(raw[:40].decode("utf-8", "replace"))


def _int(raw: bytes, name: str) -> int:
    text = raw.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:  # some exporters write sizes as "640.0"
        value = float(text)
    except ValueError:
        raise _BadRow(f"{name} is not a number: {_shown(text)}") from None
    if not value.is_integer():
        raise _BadRow(f"{name} is not an integer: {_shown(text)}")
    return int(value)


def _array(raw: bytes, dtype: np.dtype, count: int, name: str) -> np.ndarray:
    """Decode base64 ``raw`` into exactly ``count`` values of ``dtype`` (a writable copy)."""
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as e:
        raise _BadRow(f"{name}: bad base64 ({e})") from None
    if len(data) != count * dtype.itemsize:
        raise _BadRow(f"{name}: {len(data)} bytes, expected {count} {dtype.name} values "
                      f"({count * dtype.itemsize} bytes) for num_boxes")
    native = dtype.newbyteorder("=")
    return np.frombuffer(bytearray(data), dtype).astype(native, copy=False)


def _parse_row(fields: list[bytes], layout: _Layout, feature_dim: int) -> ForeignRecord:
    if len(fields) != layout.num_fields:
        raise _BadRow(f"{len(fields)} tab-separated fields, expected {layout.num_fields}")
    col = layout.index

    def field(role: str) -> bytes:
        return fields[col[role]]

    image_id = _text(field("id"), "image id").strip()
    if not image_id:
        raise _BadRow("empty image id")
    width, height = _int(field("width"), "width"), _int(field("height"), "height")
    if width < 1 or height < 1:
        raise _BadRow(f"image size must be at least 1x1, got {width}x{height}")
    n = _int(field("num_boxes"), "num_boxes")
    if n < 0:
        raise _BadRow(f"negative num_boxes {n}")

    boxes = _array(field("boxes"), _F32, 4 * n, "boxes").reshape(n, 4)
    features = _array(field("features"), _F32, feature_dim * n, "features").reshape(n, feature_dim)
    labels = (_array(field("labels"), _I64, n, "labels") if "labels" in col
              else np.full(n, -1, np.int64))
    scores = (_array(field("scores"), _F32, n, "scores") if "scores" in col
              else np.ones(n, np.float32))
    # Attributes have no place in a record, but a row whose attribute arrays disagree with
    # num_boxes is corrupt, so they are checked all the same.
    if "attr_labels" in col:
        _array(field("attr_labels"), _I64, n, "attrs_id")
    if "attr_scores" in col:
        _array(field("attr_scores"), _F32, n, "attrs_conf")

    for name, values in (("boxes", boxes), ("features", features), ("scores", scores)):
        if not np.isfinite(values).all():
            raise _BadRow(f"{name} hold NaN or infinite values")
    if ((scores < 0) | (scores > 1)).any():
        raise _BadRow("scores must lie in [0, 1]")
    if (labels < -1).any():
        raise _BadRow("class labels must be >= 0 (or -1 for unknown)")

    caption = _text(field("caption"), "query") if "caption" in col else ""
    caption_id = _text(field("caption_id"), "query_id").strip() if "caption_id" in col else ""

    boxes = np.clip(boxes, 0, np.array([width, height, width, height], np.float32))
    keep = (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])
    if not keep.all():
        boxes, features, labels, scores = boxes[keep], features[keep], labels[keep], scores[keep]
    return ForeignRecord(image_id, width, height, boxes, features, labels, scores,
                         caption or None, caption_id or None)


def _records(
    f: IO[bytes], path: str | os.PathLike[str], feature_dim: int,
    layouts: dict[int, _Layout] | _Layout, header_line: int = 0,
) -> Iterator[ForeignRecord | ForeignFormatError]:
    """Parse every line of the open file ``f``; ``layouts`` may be keyed by field count."""
    with f:
        for number, line in _lines(f):
            if number == header_line:
                continue
            if line is None:
                yield ForeignFormatError(number, f"line longer than {MAX_LINE_BYTES} bytes", path)
                continue
            if not line.strip():
                continue  # blank lines hold no record
            fields = line.split(b"\t")
            if isinstance(layouts, _Layout):
                layout = layouts
            elif len(fields) in layouts:
                layout = layouts[len(fields)]
            else:
                counts = " or ".join(str(k) for k in sorted(layouts))
                yield ForeignFormatError(
                    number, f"{len(fields)} tab-separated fields, expected {counts}", path)
                continue
            try:
                yield _parse_row(fields, layout, feature_dim)
            except _BadRow as e:
                yield ForeignFormatError(number, str(e), path)


def _check_feature_dim(feature_dim: int) -> None:
    if int(feature_dim) < 1:
        raise ValueError(f"feature_dim must be positive, got {feature_dim}")


# ---------------------------------------------------------------------------- readers


def read_bottom_up_tsv(
    path: str | os.PathLike[str], feature_dim: int = 2048,
    fieldnames: Sequence[str] | None = None,
) -> Iterator[ForeignRecord | ForeignFormatError]:
    """Stream the records of a bottom-up-attention TSV file (no header).

    ``fieldnames`` names the columns in order, with the spellings of the releases
    (``image_id``/``img_id``, ``image_w``/``img_w``, ``image_h``/``img_h``, ``num_boxes``,
    ``boxes``, ``features``, and optionally ``objects_id``, ``objects_conf``, ``attrs_id``,
    ``attrs_conf``; other names are ignored). By default each row's layout follows from its
    field count: 6 fields are :data:`BOTTOM_UP_FIELDS`, 10 are :data:`LXMERT_FIELDS`.
    Labels come from ``objects_id`` and scores from ``objects_conf`` when present.

    Bad rows are yielded as :class:`ForeignFormatError`; raises ``OSError`` if the file
    cannot be opened and ``ValueError`` for unusable ``fieldnames``.
    """
    _check_feature_dim(feature_dim)
    if fieldnames is None:
        layouts: dict[int, _Layout] | _Layout = {
            len(names): _layout(names, lenient=False) for names in (BOTTOM_UP_FIELDS, LXMERT_FIELDS)}
    else:
        layouts = _layout(list(fieldnames), lenient=True)
    # Opened here so a missing file raises now, not on first next(); _records closes it.
    f = open(path, "rb")  # noqa: SIM115
    return _records(f, path, int(feature_dim), layouts)


def read_kdd2020_tsv(
    path: str | os.PathLike[str], feature_dim: int = 2048,
) -> Iterator[ForeignRecord | ForeignFormatError]:
    """Stream the records of a KDD Cup 2020 Multimodalities Recall TSV file.

    Columns are found by the header row's names (``product_id``, ``image_h``, ``image_w``,
    ``num_boxes``, ``boxes``, ``features``, and optionally ``class_labels``, ``query``,
    ``query_id``), so files that order or omit the optional ones differently also read; a
    file without a header is taken to have :data:`KDD2020_FIELDS` in that order. ``query``
    becomes the caption and ``query_id`` the caption id (``None`` when absent or empty).

    Bad rows are yielded as :class:`ForeignFormatError`; raises ``OSError`` if the file
    cannot be opened and :class:`ForeignFormatError` if its header lacks a needed column.
    """
    _check_feature_dim(feature_dim)
    number, first = _first_line(path)
    fields = first.split(b"\t") if number else []
    has_header = _looks_like_header(fields)
    names = [f.strip().decode("utf-8", "replace") for f in fields] if has_header else KDD2020_FIELDS
    try:
        layout = _layout(names, lenient=True)
    except ValueError as e:
        raise ForeignFormatError(number, f"not a KDD 2020 header: {e}", path) from None
    f = open(path, "rb")  # noqa: SIM115 (closed by _records)
    return _records(f, path, int(feature_dim), layout, header_line=number if has_header else 0)


def read_features(
    path: str | os.PathLike[str], feature_dim: int = 2048,
) -> Iterator[ForeignRecord | ForeignFormatError]:
    """Stream the records of a bottom-up or KDD 2020 file, whichever :func:`sniff_format` finds."""
    if sniff_format(path) == KDD2020:
        return read_kdd2020_tsv(path, feature_dim)
    return read_bottom_up_tsv(path, feature_dim)


# ---------------------------------------------------------------------------- writers


def _b64(values: np.ndarray, dtype: np.dtype) -> bytes:
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes())


def _plain(text: str, name: str) -> bytes:
    if any(c in text for c in "\t\n\r"):
        raise ValueError(f"{name} {text[:40]!r} holds a tab or newline, which TSV cannot carry")
    return text.encode("utf-8")


def _columns(record: ForeignRecord) -> dict[str, bytes]:
    """Every column any format may need, encoded; checks the record's shapes first."""
    boxes = np.asarray(record.boxes)
    n = boxes.shape[0] if boxes.ndim == 2 else -1
    features = np.asarray(record.features)
    labels, scores = np.asarray(record.labels), np.asarray(record.scores)
    if (boxes.shape != (n, 4) or features.ndim != 2 or features.shape[0] != n
            or labels.shape != (n,) or scores.shape != (n,)):
        raise ValueError(
            f"record {record.image_id!r}: boxes {boxes.shape}, features {features.shape}, "
            f"labels {labels.shape} and scores {scores.shape} disagree on N")
    return {
        "id": _plain(record.image_id, "image id"),
        "width": b"%d" % int(record.width),
        "height": b"%d" % int(record.height),
        "num_boxes": b"%d" % n,
        "boxes": _b64(boxes, _F32),
        "features": _b64(features, _F32),
        "labels": _b64(labels, _I64),
        "scores": _b64(scores, _F32),
        # Records carry no attributes: written as "none" (-1, confidence 0).
        "attr_labels": _b64(np.full(n, -1), _I64),
        "attr_scores": _b64(np.zeros(n), _F32),
        "caption": _plain(record.caption or "", "caption"),
        "caption_id": _plain(record.caption_id or "", "caption id"),
    }


def _write(path: str | os.PathLike[str], records: Iterable[ForeignRecord],
           fieldnames: Sequence[str], header: bool) -> int:
    roles = []
    for name in fieldnames:
        if name not in _ROLES:
            raise ValueError(f"unknown field name {name!r}; known: {sorted(_ROLES)}")
        roles.append(_ROLES[name])
    count = 0
    with open(path, "wb") as f:
        if header:
            f.write("\t".join(fieldnames).encode("utf-8") + b"\n")
        for record in records:
            columns = _columns(record)
            f.write(b"\t".join(columns[role] for role in roles) + b"\n")
            count += 1
    return count


def write_bottom_up_tsv(
    path: str | os.PathLike[str], records: Iterable[ForeignRecord],
    fieldnames: Sequence[str] = BOTTOM_UP_FIELDS,
) -> int:
    """Write ``records`` as a bottom-up TSV file (no header, ``\\n`` line ends); return the count.

    ``fieldnames`` picks the columns, e.g. :data:`LXMERT_FIELDS` to keep labels and
    scores (``attrs_id``/``attrs_conf`` are written as -1/0, records have no attributes).
    """
    return _write(path, records, fieldnames, header=False)


def write_kdd2020_tsv(path: str | os.PathLike[str], records: Iterable[ForeignRecord]) -> int:
    """Write ``records`` as a KDD 2020 TSV file with its header row; return the count.

    A ``None`` caption or caption id is written as an empty field.
    """
    return _write(path, records, KDD2020_FIELDS, header=True)
