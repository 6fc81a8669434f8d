"""Conceptual Captions, img2dataset folders and SBU Captions: caption datasets as text files
(streamed line by line) or as a folder of images with caption sidecars.

Formats, reasons and what ``line`` means: :mod:`taomm.datasets.captions`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from taomm.datasets.captions_common import (
    BAD_LINE,
    CaptionRecord,
    Record,
    check_not_utf16,
    check_split,
    clean_caption,
    parse_image_id,
    shorten,
)
from taomm.datasets.images import ImageError, resolve_image_path
from taomm.datasets.manifest import MAX_LINE_CHARS, Rejected
from taomm.errors import TaommError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
SBU_NAMINGS = ("index", "flickr")
_FLICKR_NAME = re.compile(r"^\d+_[0-9a-f]+$")


def read_conceptual_captions(tsv: str | os.PathLike[str], images: str | os.PathLike[str] | None = None,
                             split: str | None = None) -> Iterator[Record]:
    """Conceptual Captions TSV rows (``caption<TAB>url``), image id = the 0-based row index.

    With ``images`` (the folder of downloaded images), each record's image is the file
    ``<row><ext>`` found there (``<row>.jpg`` when none is, which then reads as
    image_missing); without it, ``image=None``. Split: ``split`` or from the file name
    (``Train...`` -> train, ``Validation...`` -> val).
    """
    path = Path(tsv)
    split = check_split(split) or _split_from_name(path.name)
    folder = None if images is None else Path(images)
    for line, text in _text_lines(path):
        image_id = str(line - 1)
        if text is None:
            yield Rejected(line, None, BAD_LINE, f"line longer than {MAX_LINE_CHARS} characters")
            continue
        if not text.strip():
            continue
        fields = text.split("\t")
        if len(fields) != 2:
            yield Rejected(line, f"{image_id}#0", BAD_LINE, f"expected caption<TAB>url, got {len(fields)} fields")
            continue
        image = None if folder is None else _find_image(folder, image_id)
        yield CaptionRecord(line, image_id, f"{image_id}#0", clean_caption(fields[0]), split, image)


def read_img2dataset(folder: str | os.PathLike[str], split: str | None = None) -> Iterator[Record]:
    """An img2dataset ``files`` output folder: shard folders of images with caption sidecars.

    Image id = the key (file stem); image paths are relative to ``folder``. The caption is
    the sidecar ``.json``'s ``"caption"``, else the ``.txt`` file's text.
    """
    root = Path(folder)
    split = check_split(split)
    if not root.is_dir():
        raise TaommError(f"{root} is not a folder (expected img2dataset output: 00000/000000000.jpg ...)")
    seen: set[str] = set()
    n = 0
    for shard in _sorted_names(root, dirs=True):
        for name in _sorted_names(root / shard, dirs=False):
            if PurePosixPath(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            n += 1
            key = PurePosixPath(name).stem
            image_id = parse_image_id(key)
            if image_id is None:
                yield Rejected(n, None, BAD_LINE, f"{shard}/{name}: the key is not a valid id")
                continue
            item_id = f"{image_id}#0"
            if image_id in seen:
                yield Rejected(n, item_id, "duplicate_id", f"{shard}/{name}: key {image_id} seen before")
                continue
            seen.add(image_id)
            caption = _sidecar_caption(root, f"{shard}/{key}")
            if isinstance(caption, tuple):
                yield Rejected(n, item_id, *caption)
            else:
                yield CaptionRecord(n, image_id, item_id, caption, split, f"{shard}/{name}")


def _sorted_names(folder: Path, dirs: bool) -> list[str]:
    """Names of the sub-folders (dirs) or files in ``folder``, sorted."""
    with os.scandir(folder) as entries:
        if dirs:
            return sorted(e.name for e in entries if e.is_dir())
        # A symlinked image is listed, so that one leaving the root is rejected, not skipped.
        return sorted(e.name for e in entries if e.is_file(follow_symlinks=False) or e.is_symlink())


def _sidecar_caption(root: Path, stem: str) -> str | tuple[str, str]:
    """The caption next to an img2dataset image, or (reason, detail) why there is none."""
    for suffix in (".json", ".txt"):
        try:
            path = resolve_image_path(root, stem + suffix)  # a sidecar must stay in the root too
        except ImageError as err:
            if err.reason == "path_outside_root":
                return err.reason, err.detail
            continue  # absent: try the next kind
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read(MAX_LINE_CHARS)
        except OSError as err:
            return "missing_title", f"cannot read {stem}{suffix}: {err.strerror or err}"
        if suffix == ".txt":
            return clean_caption(text)
        try:
            meta = json.loads(text)
        except (ValueError, RecursionError):
            return BAD_LINE, f"{stem}.json is not valid JSON"
        caption = meta.get("caption") if isinstance(meta, dict) else None
        if isinstance(caption, str):
            return clean_caption(caption)
    return "missing_title", f"no caption in {stem}.json or {stem}.txt"


def read_sbu(captions: str | os.PathLike[str], urls: str | os.PathLike[str],
             images: str | os.PathLike[str] | None = None, naming: str | None = None,
             split: str | None = None) -> Iterator[Record]:
    """SBU Captions: line i of ``captions`` with line i of ``urls`` (both streamed).

    ``naming``: ``index`` (image id = the 0-based line index, file ``<i><ext>``) or
    ``flickr`` (image id and file from the url's last component); None picks from the file
    names in ``images`` (``index`` when there is no folder). Split: ``split`` or train.
    """
    split = check_split(split) or "train"
    folder = None if images is None else Path(images)
    if naming is None:
        naming = _sbu_naming(folder)
    if naming not in SBU_NAMINGS:
        raise TaommError(f"SBU naming must be one of {', '.join(SBU_NAMINGS)}, not {naming!r}")
    seen: set[str] = set()
    caption_lines, url_lines = _text_lines(Path(captions)), _text_lines(Path(urls))
    for line in itertools.count(1):
        caption, url = next(caption_lines, None), next(url_lines, None)
        if caption is None and url is None:
            return
        if caption is None:
            yield Rejected(line, None, "missing_title", "the urls file has more lines than the captions file")
            continue
        if caption[1] is None or (url is not None and url[1] is None):
            yield Rejected(line, None, BAD_LINE, f"line longer than {MAX_LINE_CHARS} characters")
            continue
        if url is None:
            yield Rejected(line, f"{line - 1}#0" if naming == "index" else None, BAD_LINE,
                           "the captions file has more lines than the urls file")
            continue
        if naming == "index":
            image_id = str(line - 1)
            image = None if folder is None else _find_image(folder, image_id)
        else:
            name = _flickr_name(url[1])
            if name is None:
                yield Rejected(line, None, BAD_LINE, f"no Flickr photo name in url {shorten(url[1])}")
                continue
            image_id, image = PurePosixPath(name).stem, name
        item_id = f"{image_id}#0"
        if image_id in seen:
            yield Rejected(line, item_id, "duplicate_id", f"photo {image_id} on an earlier line")
        else:
            seen.add(image_id)
            yield CaptionRecord(line, image_id, item_id, clean_caption(caption[1]), split, image)


def _flickr_name(url: str | None) -> str | None:
    """``4385058960_b0f291553e.jpg`` from ``http://static.flickr.com/2723/4385058960_b0f291553e.jpg``."""
    if not url or not url.strip():
        return None
    try:
        name = urlsplit(url.strip()).path.rsplit("/", 1)[-1]
    except ValueError:
        return None
    stem, dot, ext = name.rpartition(".")
    if not dot or not _FLICKR_NAME.match(stem) or ("." + ext.lower()) not in IMAGE_EXTENSIONS:
        return None
    return name


def _sbu_naming(folder: Path | None, sample: int = 100) -> str:
    """``flickr`` if the first file names in ``folder`` look like Flickr photos, else ``index``."""
    if folder is None or not folder.is_dir():
        return "index"
    with os.scandir(folder) as entries:
        for i, entry in enumerate(entries):
            if i >= sample:
                break
            stem = PurePosixPath(entry.name).stem
            if _FLICKR_NAME.match(stem):
                return "flickr"
            if stem.isdigit():
                return "index"
    return "index"


def _find_image(folder: Path, stem: str) -> str:
    """The name of ``folder/<stem><ext>`` for the first extension present; ``<stem>.jpg`` if none."""
    for ext in IMAGE_EXTENSIONS:
        if os.path.lexists(folder / (stem + ext)):
            return stem + ext
    return stem + IMAGE_EXTENSIONS[0]


def _text_lines(path: Path) -> Iterator[tuple[int, str | None]]:
    """(1-based line number, text without newline) per line; None for an overlong line."""
    check_not_utf16(path)
    try:
        f = open(path, encoding="utf-8-sig", errors="replace", newline="\n")  # noqa: SIM115
    except OSError as err:
        raise TaommError(f"cannot read {path}: {err.strerror or err}") from err
    with f:
        line = 0
        while text := f.readline(MAX_LINE_CHARS):
            line += 1
            if len(text) == MAX_LINE_CHARS and not text.endswith("\n"):
                while (rest := f.readline(MAX_LINE_CHARS)) and not rest.endswith("\n"):
                    pass  # skip the rest of the overlong line without holding it
                yield line, None
            else:
                yield line, text.rstrip("\r\n")


def _split_from_name(name: str) -> str | None:
    lower = name.lower()
    if lower.startswith("train"):
        return "train"
    if lower.startswith(("val", "validation")):
        return "val"
    return None
