"""What every caption reader shares: the record, and the checks of ids, splits and text.

The formats, reasons and line numbering are described in :mod:`taomm.datasets.captions`;
the readers are in :mod:`~taomm.datasets.captions_json` (COCO, Karpathy) and
:mod:`~taomm.datasets.captions_text` (Conceptual Captions, img2dataset, SBU).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taomm.datasets.manifest import MAX_ID_BYTES, SPLITS, Rejected
from taomm.errors import TaommError

BAD_LINE = "bad_manifest_line"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Room for "#<k>" after the image id within the manifest's item id limit.
_MAX_IMAGE_ID_BYTES = MAX_ID_BYTES - 8


@dataclass(frozen=True, slots=True)
class CaptionRecord:
    """One image-caption pair, before any image file is looked at."""

    line: int  # where in the source (see the module docstring), 1-based
    image_id: str  # the dataset's image id, as text; the key of pre-extracted features
    item_id: str  # f"{image_id}#{k}", k = the caption's index within its image
    caption: str  # verbatim but stripped; lone surrogates replaced by U+FFFD
    split: str | None  # train/val/test, or None
    image: str | None  # path relative to the image root; None when not known (features only)


Record = CaptionRecord | Rejected


def check_not_utf16(path: Path) -> None:
    try:
        with open(path, "rb") as raw:
            head = raw.read(2)
    except OSError as err:
        raise TaommError(f"cannot read {path}: {err.strerror or err}") from err
    if head in (b"\xff\xfe", b"\xfe\xff"):
        raise TaommError(f"{path} is UTF-16; save it as UTF-8")


def check_split(split: str | None) -> str | None:
    if split is not None and split not in SPLITS:
        raise TaommError(f"split must be one of {'/'.join(SPLITS)}, not {split!r}")
    return split


def parse_image_id(value: Any) -> str | None:
    """An image id (integer or non-empty string, no control characters) as text, else None."""
    if is_int(value):
        return str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or _CONTROL.search(value) or _SURROGATE.search(value):
        return None
    return value if len(value.encode("utf-8")) <= _MAX_IMAGE_ID_BYTES else None


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def clean_caption(caption: str) -> str:
    return _SURROGATE.sub("\ufffd", caption.strip())


def caption_problem(caption: Any) -> str:
    return "caption missing" if caption is None else f"caption is a {type(caption).__name__}, not a string"


def shorten(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
