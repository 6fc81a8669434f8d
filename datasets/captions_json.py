"""COCO Captions and Karpathy's splits: caption datasets distributed as one JSON file.

Formats, reasons and what ``line`` means: :mod:`taomm.datasets.captions`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from taomm.datasets.captions_common import (
    BAD_LINE,
    CaptionRecord,
    Record,
    caption_problem,
    check_not_utf16,
    check_split,
    clean_caption,
    is_int,
    parse_image_id,
    shorten,
)
from taomm.datasets.manifest import Rejected
from taomm.errors import OptionError, TaommError

_KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}
_KARPATHY_IMAGE_DIRS = {"flickr30k": "flickr30k-images", "flickr8k": "Flicker8k_Dataset"}


def read_coco_captions(annotations: str | os.PathLike[str], split: str | None = None,
                       karpathy: str | os.PathLike[str] | None = None,
                       image_dir: str | None = None) -> Iterator[Record]:
    """COCO Captions json: captions grouped by image (images in listed order), by annotation id.

    ``image_dir`` (default: the json's name without ``captions_``, e.g. ``train2014``)
    prefixes each ``file_name``. Split: Karpathy's (``karpathy``, restval -> train) for the
    images it lists, ``split`` for the others.
    """
    path = Path(annotations)
    split = check_split(split)
    data = _load_json(path, ("images", "annotations"))
    if image_dir is None:
        image_dir = path.stem[len("captions_"):] if path.stem.startswith("captions_") else ""
    karpathy_split = karpathy_splits(karpathy) if karpathy is not None else {}

    files: dict[str, str | None] = {}  # image id -> file name (None: the entry has none)
    yield from _coco_images(data["images"], files)
    # image id -> [(sort key, position, caption)]; ordered by annotation id, then position
    groups: dict[str, list[tuple[tuple[int, int], int, Any]]] = {}
    yield from _coco_annotations(data["annotations"], files, groups)

    for image_id, file_name in files.items():
        captions = sorted(groups.get(image_id, ()), key=lambda c: c[0])
        image = None if file_name is None else (f"{image_dir}/{file_name}" if image_dir else file_name)
        image_split = karpathy_split.get(image_id, split)
        for k, (_, n, caption) in enumerate(captions):
            item_id = f"{image_id}#{k}"
            if image is None:
                yield Rejected(n, item_id, BAD_LINE, f"image {image_id} has no file_name")
            elif not isinstance(caption, str):
                yield Rejected(n, item_id, "missing_title", caption_problem(caption))
            else:
                yield CaptionRecord(n, image_id, item_id, clean_caption(caption), image_split, image)


def _coco_images(entries: list[Any], files: dict[str, str | None]) -> Iterator[Rejected]:
    """Fill ``files`` (image id -> file name) from the ``images`` list; reject bad entries."""
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            yield Rejected(n, None, BAD_LINE, f"images[{n - 1}] is not an object")
            continue
        image_id = parse_image_id(entry.get("id"))
        if image_id is None:
            yield Rejected(n, None, BAD_LINE, f"images[{n - 1}] has no valid id: {shorten(entry.get('id'))}")
        elif image_id in files:
            yield Rejected(n, None, "duplicate_id", f"images[{n - 1}]: image id {image_id} listed before")
        else:
            name = entry.get("file_name")
            files[image_id] = name.strip() if isinstance(name, str) and name.strip() else None


def _coco_annotations(annotations: list[Any], files: dict[str, str | None],
                      groups: dict[str, list[tuple[tuple[int, int], int, Any]]]) -> Iterator[Rejected]:
    """Fill ``groups`` (image id -> [(sort key, position, caption)]) from the ``annotations``
    list; reject entries of no listed image and annotation ids used twice."""
    seen_ids: set[int] = set()
    for n, ann in enumerate(annotations, 1):
        if not isinstance(ann, dict):
            yield Rejected(n, None, BAD_LINE, f"annotations[{n - 1}] is not an object")
            continue
        image_id = parse_image_id(ann.get("image_id"))
        if image_id is None or image_id not in files:
            yield Rejected(n, None, BAD_LINE, f"annotations[{n - 1}]: image_id {shorten(ann.get('image_id'))} "
                           "is not in images")
            continue
        ann_id = ann.get("id")
        if is_int(ann_id):
            if ann_id in seen_ids:
                yield Rejected(n, None, "duplicate_id", f"annotations[{n - 1}]: annotation id {ann_id} used before")
                continue
            seen_ids.add(ann_id)
        order = (0, ann_id) if is_int(ann_id) else (1, n)
        groups.setdefault(image_id, []).append((order, n, ann.get("caption")))


def read_karpathy(path: str | os.PathLike[str], split: str | None = None,
                  image_dir: str | None = None) -> Iterator[Record]:
    """Karpathy's ``dataset_*.json``: each image's ``sentences`` in order, the image's split.

    Image path: ``filepath/filename`` when the entry has a filepath, else
    ``image_dir/filename`` (default image_dir: ``flickr30k-images`` for flickr30k,
    ``Flicker8k_Dataset`` for flickr8k, none otherwise). ``split`` overrides every split.
    """
    path = Path(path)
    split = check_split(split)
    data = _load_json(path, ("images",))
    if image_dir is None:
        image_dir = _KARPATHY_IMAGE_DIRS.get(str(data.get("dataset", "")), "")
    seen: set[str] = set()
    for n, entry in enumerate(data["images"], 1):
        image_id, image, image_split, problem = _karpathy_image(entry, image_dir)
        sentences = entry.get("sentences") if isinstance(entry, dict) else None
        if problem is None and image_id in seen:
            problem = ("duplicate_id", f"image {image_id} listed before")
        if problem is None and not isinstance(sentences, list):
            problem = (BAD_LINE, "sentences missing or not a list")
        if problem is None and not sentences:
            problem = ("missing_title", "the image has no sentences")
        if problem is not None:
            reason, detail = problem
            if isinstance(sentences, list) and sentences and image_id is not None:
                for k in range(len(sentences)):  # one Rejected per caption the entry holds
                    yield Rejected(n, f"{image_id}#{k}", reason, f"images[{n - 1}]: {detail}")
            else:
                yield Rejected(n, image_id, reason, f"images[{n - 1}]: {detail}")
            continue
        assert image_id is not None and isinstance(sentences, list)
        seen.add(image_id)
        for k, sentence in enumerate(sentences):
            item_id = f"{image_id}#{k}"
            raw = sentence.get("raw") if isinstance(sentence, dict) else None
            if not isinstance(raw, str):
                yield Rejected(n, item_id, "missing_title", f"sentence {k}: {caption_problem(raw)}")
            else:
                yield CaptionRecord(n, image_id, item_id, clean_caption(raw), split or image_split, image)


def karpathy_splits(path: str | os.PathLike[str]) -> dict[str, str]:
    """image id -> train/val/test from a Karpathy json (restval -> train); bad entries skipped."""
    data = _load_json(Path(path), ("images",))
    out: dict[str, str] = {}
    for entry in data["images"]:
        image_id, _, image_split, problem = _karpathy_image(entry, "")
        if problem is None and image_id is not None and image_split is not None:
            out.setdefault(image_id, image_split)
    return out


def _karpathy_image(entry: Any, image_dir: str) -> tuple[str | None, str | None, str | None,
                                                             tuple[str, str] | None]:
    """(image id, image path, split, problem) of one Karpathy image entry."""
    if not isinstance(entry, dict):
        return None, None, None, (BAD_LINE, "not an object")
    filename = entry.get("filename")
    if not isinstance(filename, str) or not filename.strip():
        return None, None, None, (BAD_LINE, f"filename missing or not a string: {shorten(filename)}")
    filename = filename.strip()
    image_id = parse_image_id(entry["cocoid"]) if "cocoid" in entry else parse_image_id(PurePosixPath(filename).stem)
    if image_id is None:
        return None, None, None, (BAD_LINE, f"no valid image id for {shorten(filename)}")
    folder = entry.get("filepath")
    folder = folder.strip().strip("/") if isinstance(folder, str) and folder.strip() else image_dir
    raw_split = entry.get("split")
    image_split = _KARPATHY_SPLITS.get(raw_split) if isinstance(raw_split, str) else None
    if image_split is None:
        return image_id, None, None, (BAD_LINE, f"split {shorten(raw_split)} is not train/val/test/restval")
    return image_id, f"{folder}/{filename}" if folder else filename, image_split, None


def _load_json(path: Path, lists: tuple[str, ...]) -> dict[str, Any]:
    """The top-level object of a dataset json, checked to hold ``lists`` as JSON arrays."""
    check_not_utf16(path)
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            data = json.load(f)
    except OSError as err:
        raise TaommError(f"cannot read {path}: {err.strerror or err}") from err
    except json.JSONDecodeError as err:
        raise TaommError(f"{path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from err
    except (ValueError, RecursionError) as err:
        raise TaommError(f"{path} is not valid JSON: {type(err).__name__}") from err
    if not isinstance(data, dict):
        raise TaommError(f"{path}: expected a JSON object with {', '.join(lists)}, got a {type(data).__name__}")
    for name in lists:
        if not isinstance(data.get(name), list):
            raise OptionError(f"{path}: expected a list under {name!r}; is this the right {{format}}?", "format")
    return data

