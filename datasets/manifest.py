"""The input manifest of ``taomm prepare``: raw items as JSON Lines or CSV/TSV.

Each item names an ``item_id``, a ``title``, an ``image`` (a path relative to the root,
by default the manifest's folder) and optionally a ``split`` (train/val/test); other fields
are ignored. :func:`read_manifest` streams the file and never stops on a bad line: every
non-blank JSONL line (CSV: every data row) gives exactly one :class:`ManifestEntry` or one
:class:`Rejected`, so ``ok + rejected == inputs``.

==================  =======================================================================
reason              meaning
==================  =======================================================================
bad_manifest_line   not JSON / not an object / wrong CSV field count; ``item_id`` or
                    ``image`` missing, not a string or integer, empty, not valid Unicode;
                    ``item_id`` over 256 UTF-8 bytes or with control characters;
                    ``split`` not one of train/val/test
duplicate_id        an earlier well-formed line already used this ``item_id`` (first wins)
missing_title       ``title`` absent, null or not a string ("" is kept: the text pipeline
                    rejects it as ``empty``)
path_outside_root   the image path is absolute, has ``..``, or a symlink leaves the root
image_missing       the image file does not exist or is not a regular file
==================  =======================================================================

A problem with the whole file (unreadable, UTF-16, a JSON array, a CSV header without
``item_id`` or ``image``) raises :class:`taomm.errors.TaommError` instead.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from taomm.datasets.images import ImageError, resolve_image_path
from taomm.errors import TaommError

REASONS = ("bad_manifest_line", "missing_title", "duplicate_id", "image_missing", "path_outside_root")
SPLITS = ("train", "val", "test")
MAX_ID_BYTES = 256
# A longer physical line is rejected unread, so one runaway line cannot exhaust memory.
MAX_LINE_CHARS = 1 << 20
# A CSV record may span lines (quoted newlines); a stray opening quote would otherwise
# swallow the rest of the file into one record.
MAX_RECORD_LINES = 1000

_JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
_CSV_SUFFIXES = (".csv", ".tsv")
_BAD = "bad_manifest_line"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One usable item. ``image`` is the resolved real path, inside the root."""

    line: int  # 1-based line number in the file; CSV: the first physical line of the row
    item_id: str
    title: str  # verbatim (may be ""), lone surrogates replaced by U+FFFD
    image: Path
    split: str | None  # one of SPLITS, or None when absent/empty


@dataclass(frozen=True, slots=True)
class Rejected:
    """One unusable line, for the quarantine. ``reason`` is one of REASONS."""

    line: int
    item_id: str | None  # None when no valid item_id could be read
    reason: str
    detail: str  # short human text


def read_manifest(path: Path, root: Path | None = None) -> Iterator[ManifestEntry | Rejected]:
    """Entries in file order, one per non-blank JSONL line / CSV data row.

    Format by extension (.jsonl/.json → JSONL, .csv/.tsv → CSV with , or tab) or, for other
    names, by content (first non-blank char '{' → JSONL). root defaults to the manifest's
    folder. Raises TaommError (on first iteration) for a problem with the whole file.
    """
    path = Path(path)
    root = path.parent if root is None else Path(root)
    first = _first_char(path)
    suffix = path.suffix.lower()
    if first == "[" and (suffix == ".json" or suffix not in _JSONL_SUFFIXES + _CSV_SUFFIXES):
        # In a .jsonl file an array is one bad line; a .json file starting with "[" is one array.
        raise TaommError(f"{path} is a JSON array; a manifest needs one JSON object per line (JSON Lines)")
    is_jsonl = suffix in _JSONL_SUFFIXES or (suffix not in _CSV_SUFFIXES and first == "{")
    seen: set[str] = set()  # the only state that grows with the file
    if is_jsonl:
        with _open(path, newline="\n") as f:
            for line, record in _jsonl_records(f):
                yield record if isinstance(record, Rejected) else _check(line, record, root, seen)
    else:
        with _open(path, newline="") as f:  # csv needs newline="" for quoted newlines
            for line, record in _csv_records(f, path, tab=suffix == ".tsv"):
                yield record if isinstance(record, Rejected) else _check(line, record, root, seen)


# --- reading --------------------------------------------------------------------------


def _open(path: Path, newline: str) -> IO[str]:
    try:
        # utf-8-sig drops a leading BOM; bad bytes become U+FFFD rather than an exception.
        return open(path, encoding="utf-8-sig", errors="replace", newline=newline)
    except OSError as err:
        raise TaommError(f"cannot read manifest {path}: {err.strerror or err}") from err


def _first_char(path: Path) -> str:
    """The first non-whitespace character of the file ("" if none); checks the encoding."""
    try:
        with open(path, "rb") as raw:
            if raw.read(2) in (b"\xff\xfe", b"\xfe\xff"):
                raise TaommError(f"{path} is UTF-16; save the manifest as UTF-8")
        with open(path, encoding="utf-8-sig", errors="replace") as text:
            while chunk := text.read(4096):
                if stripped := chunk.lstrip():
                    return stripped[0]
    except OSError as err:
        raise TaommError(f"cannot read manifest {path}: {err.strerror or err}") from err
    return ""


class _Lines:
    """Physical lines of a text file, numbered, each at most MAX_LINE_CHARS long.

    For CSV, ``record_start`` bounds how many lines one record may take: past
    MAX_RECORD_LINES it raises _RecordError without consuming the line, so the csv reader
    gives up on that record and the next one starts there.
    """

    def __init__(self, f: IO[str]) -> None:
        self._f = f
        self.lineno = 0  # lines consumed so far
        self.record_start: int | None = None

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.record_start is not None and self.lineno + 1 - self.record_start >= MAX_RECORD_LINES:
            raise _RecordError(f"record spans more than {MAX_RECORD_LINES} lines (unbalanced quote?)")
        text = self._f.readline(MAX_LINE_CHARS)
        if not text:
            raise StopIteration
        self.lineno += 1
        if len(text) == MAX_LINE_CHARS and not text.endswith(("\n", "\r")):
            while (rest := self._f.readline(MAX_LINE_CHARS)) and not rest.endswith(("\n", "\r")):
                pass  # skip the rest of the overlong line without holding it
            raise _RecordError(f"line longer than {MAX_LINE_CHARS} characters")
        return text


class _RecordError(Exception):
    """A record the reader gave up on; the message is the quarantine detail."""


def _jsonl_records(f: IO[str]) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    lines = _Lines(f)
    while True:
        try:
            text = next(lines)
        except StopIteration:
            return
        except _RecordError as err:
            yield lines.lineno, Rejected(lines.lineno, None, _BAD, str(err))
            continue
        if text.strip():
            obj = _parse_object(text)
            yield lines.lineno, obj if isinstance(obj, dict) else Rejected(lines.lineno, None, _BAD, obj)


def _parse_object(text: str) -> dict[str, Any] | str:
    """The JSON object on one line, or why there is none."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        return f"not valid JSON: {err.msg} at column {err.colno}"
    except (ValueError, RecursionError) as err:  # an integer over 4300 digits, deep nesting
        return f"not valid JSON: {type(err).__name__}"
    return obj if isinstance(obj, dict) else f"expected a JSON object, got {type(obj).__name__}"


def _csv_records(f: IO[str], path: Path, tab: bool) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    lines = _Lines(f)
    header_text = ""
    try:
        for text in lines:
            if text.strip():
                header_text = text
                break
    except _RecordError as err:
        raise TaommError(f"{path}: no CSV header on line {lines.lineno}: {err}") from err
    if not header_text:
        return  # empty manifest
    delimiter = "\t" if tab or ("\t" in header_text and "," not in header_text) else ","
    try:
        header = next(csv.reader([header_text], delimiter=delimiter, strict=True))
    except csv.Error as err:
        raise TaommError(f"{path}: cannot parse the CSV header on line {lines.lineno}: {err}") from err
    columns = [name.strip().lower() for name in header]
    missing = [name for name in ("item_id", "image") if name not in columns]
    if missing:
        raise TaommError(f"{path}: the CSV header (line {lines.lineno}) lacks column(s) "
                         f"{', '.join(missing)}; it has: {', '.join(columns) or '(none)'}")
    for name in ("item_id", "title", "image", "split"):
        if columns.count(name) > 1:
            raise TaommError(f"{path}: the CSV header (line {lines.lineno}) has column {name!r} twice")
    wanted = {name: columns.index(name) for name in ("item_id", "title", "image", "split") if name in columns}

    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    while True:
        start = lines.record_start = lines.lineno + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except (csv.Error, _RecordError) as err:
            # csv restarts at the next line after an error, so one bad row costs one record.
            yield start, Rejected(start, None, _BAD, f"bad CSV row: {err}")
            continue
        if not row or (len(row) == 1 and not row[0].strip() and lines.lineno == start):
            continue  # blank line
        if len(row) != len(columns):
            yield start, Rejected(start, None, _BAD, f"expected {len(columns)} fields, got {len(row)}")
            continue
        yield start, {name: row[index] for name, index in wanted.items()}


# --- checking -------------------------------------------------------------------------


def _check(line: int, record: dict[str, Any], root: Path, seen: set[str]) -> ManifestEntry | Rejected:
    """Apply the rules in order: structure, then duplicate, then title, then the image path.

    An id is claimed by the first well-formed line that names it, whether or not that line
    is then accepted, so which line owns an id depends on the file alone (not on which
    images exist at the time of the run).
    """
    item_id = _text_field(record.get("item_id"))
    if item_id is None:
        return Rejected(line, None, _BAD, "item_id missing or not a string/integer")
    if not item_id:
        return Rejected(line, None, _BAD, "empty item_id")
    if _SURROGATE.search(item_id) or _CONTROL.search(item_id):
        return Rejected(line, None, _BAD, f"item_id {_short(item_id)} has control or invalid characters")
    if (size := len(item_id.encode("utf-8"))) > MAX_ID_BYTES:
        detail = f"item_id is {size} UTF-8 bytes (max {MAX_ID_BYTES}): {_short(item_id)}"
        return Rejected(line, None, _BAD, detail)

    image = _text_field(record.get("image"))
    if image is None:
        return Rejected(line, item_id, _BAD, "image missing or not a string")
    if not image:
        return Rejected(line, item_id, _BAD, "empty image path")
    if _SURROGATE.search(image):
        return Rejected(line, item_id, _BAD, f"image path {_short(image)} is not valid Unicode")

    split = record.get("split")
    if isinstance(split, str):
        split = split.strip().lower() or None
    if split is not None and split not in SPLITS:
        return Rejected(line, item_id, _BAD, f"split {_short(split)} is not one of {'/'.join(SPLITS)}")

    if item_id in seen:
        return Rejected(line, item_id, "duplicate_id", "item_id already used on an earlier line")
    seen.add(item_id)

    title = record.get("title")
    if not isinstance(title, str):
        return Rejected(line, item_id, "missing_title", "title missing" if title is None else
                        f"title is a {type(title).__name__}, not a string")
    title = _SURROGATE.sub("\ufffd", title)  # from "\ud800"-style JSON escapes; not encodable

    try:
        resolved = resolve_image_path(root, image)
    except ImageError as err:
        return Rejected(line, item_id, err.reason, err.detail)
    except (OSError, ValueError) as err:  # e.g. a name too long for the filesystem
        detail = f"cannot resolve {_short(image)}: {type(err).__name__}"
        return Rejected(line, item_id, "image_missing", detail)
    return ManifestEntry(line, item_id, title, resolved, split)


def _text_field(value: Any) -> str | None:
    """A string or integer field as stripped text; None for anything else (bool included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    return None


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def iter_json_objects(path: str | os.PathLike[str]) -> Iterator[dict]:
    """The JSON objects of a JSONL file, leniently: lines that are not objects are skipped
    (for side files such as captions; manifests go through :func:`read_manifest`)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                yield row
