"""English caption datasets as distributed: COCO, Flickr30K (Karpathy), Conceptual Captions, SBU.

Every reader yields :class:`CaptionRecord` (one per image-caption pair) or
:class:`~taomm.datasets.manifest.Rejected`, and never stops on a bad entry.
:func:`caption_entries` turns records into the :class:`~taomm.datasets.manifest.ManifestEntry`
stream of ``taomm prepare`` (resolving image paths inside a root), and
:func:`captions_by_image` groups them by image to pair with pre-extracted bottom-up-attention
features, where no image file is needed. :func:`read_captions` and
:func:`read_caption_manifest` pick a reader by format name (:data:`FORMATS`).

Item ids: ``f"{image_id}#{k}"``, ``k`` the caption's index within its image, so the image
of an item is the part before the last ``#``; all captions of an image come out together.

Formats and the folder layout each expects (the ``images`` root by default):

``coco`` -- COCO Captions, ``annotations/captions_train2014.json`` and
``captions_val2014.json`` (``{"images": [{"id", "file_name", ...}], "annotations":
[{"id", "image_id", "caption"}], ...}``). Image id: the COCO id. Captions of an image are
ordered by annotation id, images as listed. Split: ``split=``, or Karpathy's
``dataset_coco.json`` (``karpathy=``, by ``cocoid``; images it does not list take ``split``)::

    coco/                                  <- root
      annotations/captions_train2014.json
      train2014/COCO_train2014_000000000009.jpg   (folder named after the json: image_dir)

``karpathy`` -- Karpathy's splits, ``dataset_flickr30k.json`` (also ``dataset_coco.json``,
``dataset_flickr8k.json``): ``{"images": [{"filename", "split", "sentences": [{"raw"}],
("filepath", "cocoid")}], "dataset"}``. Image id: ``cocoid`` if present, else the file
name's stem. Split ``restval`` counts as train::

    flickr30k/                             <- root
      dataset_flickr30k.json
      flickr30k-images/1000092795.jpg      (dataset_coco.json: <filepath>/<filename>,
                                            e.g. train2014/COCO_train2014_...jpg)

``cc`` -- Conceptual Captions, ``Train_GCC-training.tsv`` / ``Validation_GCC-1.1.0-Validation.tsv``:
no header, ``caption<TAB>url`` per line. Image id: the 0-based row index. Images you
downloaded are named by that index, with any of :data:`IMAGE_EXTENSIONS`; rows whose image
is absent are rejected ``image_missing``. Split: ``split=``, else from the file name::

    cc3m/
      Train_GCC-training.tsv
      images/0.jpg  1.png  3.jpg ...       <- root

``img2dataset`` -- a folder written by img2dataset (``--output_format files``), read
directly: each image with its sidecar ``.json`` (``"caption"``) or ``.txt``. Image id: the
img2dataset key (the file stem, e.g. ``000000123``; with the default 10,000 samples per
shard it is the zero-padded TSV row index)::

    cc3m-img2dataset/                      <- root (the source itself)
      00000/000000000.jpg  00000/000000000.json  00000/000000000.txt ...

``sbu`` -- SBU Captions, ``SBU_captioned_photo_dataset_captions.txt`` and
``..._urls.txt``, line-aligned. Images named by the 0-based line index (image id: the
index) or by the Flickr photo name at the end of the url (``.../2723/4385058960_b0f291553e.jpg``
-> ``4385058960_b0f291553e.jpg``, image id ``4385058960_b0f291553e``); ``naming=None``
tells them apart from the folder's file names. Split: ``split=``, else train::

    sbu/
      SBU_captioned_photo_dataset_captions.txt
      SBU_captioned_photo_dataset_urls.txt
      images/0.jpg ... or images/4385058960_b0f291553e.jpg ...   <- root

Reasons (:data:`taomm.datasets.manifest.REASONS`): ``bad_manifest_line`` (a line or entry
that does not follow the format, an unknown image, a bad split), ``missing_title`` (no
caption text), ``duplicate_id`` (an image listed twice), ``image_missing`` and
``path_outside_root`` (from :func:`taomm.datasets.images.resolve_image_path`). Every
caption gives one record or one Rejected; so does an image entry (JSON formats) that no
caption can be attributed to. ``line`` is the 1-based line for the text formats; for JSON
the 1-based position in the ``annotations`` (COCO; ``images`` for image entries) or
``images`` (Karpathy) list; for img2dataset the image's position in the walk.

A bad whole file (unreadable, not JSON, wrong top-level structure, UTF-16) raises
:class:`taomm.errors.TaommError`. Text files are streamed line by line; JSON is loaded.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from taomm.datasets.images import ImageError, resolve_image_path
from taomm.datasets.manifest import MAX_ID_BYTES, MAX_LINE_CHARS, SPLITS, ManifestEntry, Rejected
from taomm.errors import TaommError

FORMATS = ("coco", "karpathy", "cc", "img2dataset", "sbu")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
SBU_NAMINGS = ("index", "flickr")

_BAD = "bad_manifest_line"
_KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}
_KARPATHY_IMAGE_DIRS = {"flickr30k": "flickr30k-images", "flickr8k": "Flicker8k_Dataset"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_FLICKR_NAME = re.compile(r"^\d+_[0-9a-f]+$")
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


# --- dispatch -------------------------------------------------------------------------


def read_captions(fmt: str, source: str | os.PathLike[str], *, images: str | os.PathLike[str] | None = None,
                  split: str | None = None, karpathy: str | os.PathLike[str] | None = None,
                  urls: str | os.PathLike[str] | None = None) -> Iterator[Record]:
    """Records of ``source`` in format ``fmt`` (one of FORMATS).

    ``images`` is only read by ``cc`` and ``sbu`` (to find which file each row has; without
    it records have ``image=None``); ``karpathy`` only by ``coco``; ``urls`` only by ``sbu``
    (default: the captions file's name with ``captions`` -> ``urls``).
    """
    source = Path(source)
    images = None if images is None else Path(images)
    if fmt == "coco":
        return read_coco_captions(source, split=split, karpathy=karpathy)
    if fmt == "karpathy":
        return read_karpathy(source, split=split)
    if fmt == "cc":
        return read_conceptual_captions(source, images=images, split=split)
    if fmt == "img2dataset":
        return read_img2dataset(source, split=split)
    if fmt == "sbu":
        urls = Path(urls) if urls is not None else source.with_name(source.name.replace("captions", "urls"))
        return read_sbu(source, urls, images=images, split=split)
    raise TaommError(f"unknown caption format {fmt!r}; expected one of {', '.join(FORMATS)}")


def default_image_root(fmt: str, source: str | os.PathLike[str]) -> Path:
    """The folder the image paths of ``fmt`` records are relative to, for the usual layout."""
    source = Path(source)
    if fmt == "coco":
        return source.parent.parent if source.parent.name == "annotations" else source.parent
    if fmt == "karpathy":
        return source.parent
    if fmt in ("cc", "sbu"):
        return source.parent / "images"
    if fmt == "img2dataset":
        return source
    raise TaommError(f"unknown caption format {fmt!r}; expected one of {', '.join(FORMATS)}")


def read_caption_manifest(fmt: str, source: str | os.PathLike[str], *,
                          images: str | os.PathLike[str] | None = None, split: str | None = None,
                          karpathy: str | os.PathLike[str] | None = None,
                          urls: str | os.PathLike[str] | None = None,
                          id_prefix: str = "") -> Iterator[ManifestEntry | Rejected]:
    """The ManifestEntry stream of a caption dataset; ``images`` defaults to default_image_root."""
    root = Path(images) if images is not None else default_image_root(fmt, source)
    records = read_captions(fmt, source, images=root, split=split, karpathy=karpathy, urls=urls)
    return caption_entries(records, root, id_prefix=id_prefix)


# --- the two views --------------------------------------------------------------------


def caption_entries(records: Iterable[Record], root: str | os.PathLike[str],
                    id_prefix: str = "") -> Iterator[ManifestEntry | Rejected]:
    """Records as ManifestEntry (image resolved inside ``root``) or Rejected, in order.

    ``id_prefix`` is put before every item id, so datasets whose image ids can collide
    (CC and SBU row indices) can share one store.
    """
    root = Path(root)
    for record in records:
        if isinstance(record, Rejected):
            item_id = None if record.item_id is None else id_prefix + record.item_id
            yield Rejected(record.line, item_id, record.reason, record.detail)
            continue
        item_id = id_prefix + record.item_id
        if record.image is None:
            yield Rejected(record.line, item_id, "image_missing", "no image file for this caption")
            continue
        try:
            resolved = resolve_image_path(root, record.image)
        except ImageError as err:
            yield Rejected(record.line, item_id, err.reason, err.detail)
            continue
        except (OSError, ValueError) as err:  # e.g. a name too long for the filesystem
            yield Rejected(record.line, item_id, "image_missing", f"cannot resolve {_short(record.image)}: "
                           f"{type(err).__name__}")
            continue
        yield ManifestEntry(record.line, item_id, record.caption, resolved, record.split)


def captions_by_image(records: Iterable[Record], key: str = "image_id", id_prefix: str = "",
                      on_reject: Callable[[Rejected], None] | None = None,
                      ) -> dict[str, list[tuple[str, str, str | None]]]:
    """``{image key: [(item_id, caption, split), ...]}`` to pair captions with features.

    ``key="image_id"`` keys by the dataset's image id (bottom-up-attention TSVs use the
    COCO id or the Flickr file stem); ``key="stem"`` by the image file's stem (LXMERT's
    ``COCO_val2014_000000000042``). Rejected records (and, for ``stem``, records without an
    image path) go to ``on_reject`` and are otherwise dropped.
    """
    if key not in ("image_id", "stem"):
        raise TaommError(f"key must be 'image_id' or 'stem', not {key!r}")
    out: dict[str, list[tuple[str, str, str | None]]] = {}
    for record in records:
        if isinstance(record, CaptionRecord) and key == "stem" and record.image is None:
            record = Rejected(record.line, record.item_id, "image_missing", "no image file name to key by")
        if isinstance(record, Rejected):
            if on_reject is not None:
                item_id = None if record.item_id is None else id_prefix + record.item_id
                on_reject(Rejected(record.line, item_id, record.reason, record.detail))
            continue
        image_key = record.image_id if key == "image_id" else PurePosixPath(record.image).stem
        out.setdefault(image_key, []).append((id_prefix + record.item_id, record.caption, record.split))
    return out


# --- COCO and Karpathy (JSON) -----------------------------------------------------------


def read_coco_captions(annotations: str | os.PathLike[str], split: str | None = None,
                       karpathy: str | os.PathLike[str] | None = None,
                       image_dir: str | None = None) -> Iterator[Record]:
    """COCO Captions json: captions grouped by image (images in listed order), by annotation id.

    ``image_dir`` (default: the json's name without ``captions_``, e.g. ``train2014``)
    prefixes each ``file_name``. Split: Karpathy's (``karpathy``, restval -> train) for the
    images it lists, ``split`` for the others.
    """
    path = Path(annotations)
    split = _check_split(split)
    data = _load_json(path, ("images", "annotations"))
    if image_dir is None:
        image_dir = path.stem[len("captions_"):] if path.stem.startswith("captions_") else ""
    karpathy_split = karpathy_splits(karpathy) if karpathy is not None else {}

    files: dict[str, str | None] = {}  # image id -> file name (None: the entry has none)
    for n, entry in enumerate(data["images"], 1):
        if not isinstance(entry, dict):
            yield Rejected(n, None, _BAD, f"images[{n - 1}] is not an object")
            continue
        image_id = _image_id(entry.get("id"))
        if image_id is None:
            yield Rejected(n, None, _BAD, f"images[{n - 1}] has no valid id: {_short(entry.get('id'))}")
        elif image_id in files:
            yield Rejected(n, None, "duplicate_id", f"images[{n - 1}]: image id {image_id} listed before")
        else:
            name = entry.get("file_name")
            files[image_id] = name.strip() if isinstance(name, str) and name.strip() else None

    # image id -> [(sort key, position, caption)]; ordered by annotation id, then position
    groups: dict[str, list[tuple[tuple[int, int], int, Any]]] = {}
    seen_ids: set[int] = set()
    for n, ann in enumerate(data["annotations"], 1):
        if not isinstance(ann, dict):
            yield Rejected(n, None, _BAD, f"annotations[{n - 1}] is not an object")
            continue
        image_id = _image_id(ann.get("image_id"))
        if image_id is None or image_id not in files:
            yield Rejected(n, None, _BAD, f"annotations[{n - 1}]: image_id {_short(ann.get('image_id'))} "
                           "is not in images")
            continue
        ann_id = ann.get("id")
        if _is_int(ann_id):
            if ann_id in seen_ids:
                yield Rejected(n, None, "duplicate_id", f"annotations[{n - 1}]: annotation id {ann_id} used before")
                continue
            seen_ids.add(ann_id)
        order = (0, ann_id) if _is_int(ann_id) else (1, n)
        groups.setdefault(image_id, []).append((order, n, ann.get("caption")))

    for image_id, file_name in files.items():
        captions = sorted(groups.get(image_id, ()), key=lambda c: c[0])
        image = None if file_name is None else (f"{image_dir}/{file_name}" if image_dir else file_name)
        image_split = karpathy_split.get(image_id, split)
        for k, (_, n, caption) in enumerate(captions):
            item_id = f"{image_id}#{k}"
            if image is None:
                yield Rejected(n, item_id, _BAD, f"image {image_id} has no file_name")
            elif not isinstance(caption, str):
                yield Rejected(n, item_id, "missing_title", _caption_problem(caption))
            else:
                yield CaptionRecord(n, image_id, item_id, _clean(caption), image_split, image)


def read_karpathy(path: str | os.PathLike[str], split: str | None = None,
                  image_dir: str | None = None) -> Iterator[Record]:
    """Karpathy's ``dataset_*.json``: each image's ``sentences`` in order, the image's split.

    Image path: ``filepath/filename`` when the entry has a filepath, else
    ``image_dir/filename`` (default image_dir: ``flickr30k-images`` for flickr30k,
    ``Flicker8k_Dataset`` for flickr8k, none otherwise). ``split`` overrides every split.
    """
    path = Path(path)
    split = _check_split(split)
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
            problem = (_BAD, "sentences missing or not a list")
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
                yield Rejected(n, item_id, "missing_title", f"sentence {k}: {_caption_problem(raw)}")
            else:
                yield CaptionRecord(n, image_id, item_id, _clean(raw), split or image_split, image)


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
        return None, None, None, (_BAD, "not an object")
    filename = entry.get("filename")
    if not isinstance(filename, str) or not filename.strip():
        return None, None, None, (_BAD, f"filename missing or not a string: {_short(filename)}")
    filename = filename.strip()
    image_id = _image_id(entry["cocoid"]) if "cocoid" in entry else _image_id(PurePosixPath(filename).stem)
    if image_id is None:
        return None, None, None, (_BAD, f"no valid image id for {_short(filename)}")
    folder = entry.get("filepath")
    folder = folder.strip().strip("/") if isinstance(folder, str) and folder.strip() else image_dir
    raw_split = entry.get("split")
    image_split = _KARPATHY_SPLITS.get(raw_split) if isinstance(raw_split, str) else None
    if image_split is None:
        return image_id, None, None, (_BAD, f"split {_short(raw_split)} is not train/val/test/restval")
    return image_id, f"{folder}/{filename}" if folder else filename, image_split, None


def _load_json(path: Path, lists: tuple[str, ...]) -> dict[str, Any]:
    """The top-level object of a dataset json, checked to hold ``lists`` as JSON arrays."""
    _check_not_utf16(path)
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
            raise TaommError(f"{path}: expected a list under {name!r}; is this the right --format?")
    return data


# --- Conceptual Captions, img2dataset, SBU (text, streamed) ------------------------------


def read_conceptual_captions(tsv: str | os.PathLike[str], images: str | os.PathLike[str] | None = None,
                             split: str | None = None) -> Iterator[Record]:
    """Conceptual Captions TSV rows (``caption<TAB>url``), image id = the 0-based row index.

    With ``images`` (the folder of downloaded images), each record's image is the file
    ``<row><ext>`` found there (``<row>.jpg`` when none is, which then reads as
    image_missing); without it, ``image=None``. Split: ``split`` or from the file name
    (``Train...`` -> train, ``Validation...`` -> val).
    """
    path = Path(tsv)
    split = _check_split(split) or _split_from_name(path.name)
    folder = None if images is None else Path(images)
    for line, text in _text_lines(path):
        image_id = str(line - 1)
        if text is None:
            yield Rejected(line, None, _BAD, f"line longer than {MAX_LINE_CHARS} characters")
            continue
        if not text.strip():
            continue
        fields = text.split("\t")
        if len(fields) != 2:
            yield Rejected(line, f"{image_id}#0", _BAD, f"expected caption<TAB>url, got {len(fields)} fields")
            continue
        image = None if folder is None else _find_image(folder, image_id)
        yield CaptionRecord(line, image_id, f"{image_id}#0", _clean(fields[0]), split, image)


def read_img2dataset(folder: str | os.PathLike[str], split: str | None = None) -> Iterator[Record]:
    """An img2dataset ``files`` output folder: shard folders of images with caption sidecars.

    Image id = the key (file stem); image paths are relative to ``folder``. The caption is
    the sidecar ``.json``'s ``"caption"``, else the ``.txt`` file's text.
    """
    root = Path(folder)
    split = _check_split(split)
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
            image_id = _image_id(key)
            if image_id is None:
                yield Rejected(n, None, _BAD, f"{shard}/{name}: the key is not a valid id")
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
            return _clean(text)
        try:
            meta = json.loads(text)
        except (ValueError, RecursionError):
            return _BAD, f"{stem}.json is not valid JSON"
        caption = meta.get("caption") if isinstance(meta, dict) else None
        if isinstance(caption, str):
            return _clean(caption)
    return "missing_title", f"no caption in {stem}.json or {stem}.txt"


def read_sbu(captions: str | os.PathLike[str], urls: str | os.PathLike[str],
             images: str | os.PathLike[str] | None = None, naming: str | None = None,
             split: str | None = None) -> Iterator[Record]:
    """SBU Captions: line i of ``captions`` with line i of ``urls`` (both streamed).

    ``naming``: ``index`` (image id = the 0-based line index, file ``<i><ext>``) or
    ``flickr`` (image id and file from the url's last component); None picks from the file
    names in ``images`` (``index`` when there is no folder). Split: ``split`` or train.
    """
    split = _check_split(split) or "train"
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
            yield Rejected(line, None, _BAD, f"line longer than {MAX_LINE_CHARS} characters")
            continue
        if url is None:
            yield Rejected(line, f"{line - 1}#0" if naming == "index" else None, _BAD,
                           "the captions file has more lines than the urls file")
            continue
        if naming == "index":
            image_id = str(line - 1)
            image = None if folder is None else _find_image(folder, image_id)
        else:
            name = _flickr_name(url[1])
            if name is None:
                yield Rejected(line, None, _BAD, f"no Flickr photo name in url {_short(url[1])}")
                continue
            image_id, image = PurePosixPath(name).stem, name
        item_id = f"{image_id}#0"
        if image_id in seen:
            yield Rejected(line, item_id, "duplicate_id", f"photo {image_id} on an earlier line")
        else:
            seen.add(image_id)
            yield CaptionRecord(line, image_id, item_id, _clean(caption[1]), split, image)


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
    _check_not_utf16(path)
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


# --- small checks -----------------------------------------------------------------------


def _check_not_utf16(path: Path) -> None:
    try:
        with open(path, "rb") as raw:
            head = raw.read(2)
    except OSError as err:
        raise TaommError(f"cannot read {path}: {err.strerror or err}") from err
    if head in (b"\xff\xfe", b"\xfe\xff"):
        raise TaommError(f"{path} is UTF-16; save it as UTF-8")


def _check_split(split: str | None) -> str | None:
    if split is not None and split not in SPLITS:
        raise TaommError(f"split must be one of {'/'.join(SPLITS)}, not {split!r}")
    return split


def _split_from_name(name: str) -> str | None:
    lower = name.lower()
    if lower.startswith("train"):
        return "train"
    if lower.startswith(("val", "validation")):
        return "val"
    return None


def _image_id(value: Any) -> str | None:
    """An image id (integer or non-empty string, no control characters) as text, else None."""
    if _is_int(value):
        return str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or _CONTROL.search(value) or _SURROGATE.search(value):
        return None
    return value if len(value.encode("utf-8")) <= _MAX_IMAGE_ID_BYTES else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _clean(caption: str) -> str:
    return _SURROGATE.sub("\ufffd", caption.strip())


def _caption_problem(caption: Any) -> str:
    return "caption missing" if caption is None else f"caption is a {type(caption).__name__}, not a string"


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
