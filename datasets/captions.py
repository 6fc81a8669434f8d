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

The readers live by kind of file: :mod:`~taomm.datasets.captions_json` (``coco``,
``karpathy``) and :mod:`~taomm.datasets.captions_text` (``cc``, ``img2dataset``, ``sbu``),
on the record and checks of :mod:`~taomm.datasets.captions_common`; this module picks one
and turns its records into the two views, and every reader is importable from here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath

from taomm.datasets.captions_common import CaptionRecord, Record, shorten
from taomm.datasets.captions_json import karpathy_splits, read_coco_captions, read_karpathy
from taomm.datasets.captions_text import (
    IMAGE_EXTENSIONS,
    SBU_NAMINGS,
    read_conceptual_captions,
    read_img2dataset,
    read_sbu,
)
from taomm.datasets.images import ImageError, resolve_image_path
from taomm.datasets.manifest import ManifestEntry, Rejected
from taomm.errors import TaommError

__all__ = [
    "FORMATS", "IMAGE_EXTENSIONS", "SBU_NAMINGS", "CaptionRecord", "Record", "caption_entries",
    "captions_by_image", "default_image_root", "karpathy_splits", "read_caption_manifest",
    "read_captions", "read_coco_captions", "read_conceptual_captions", "read_img2dataset",
    "read_karpathy", "read_sbu",
]

FORMATS = ("coco", "karpathy", "cc", "img2dataset", "sbu")


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
            yield Rejected(record.line, item_id, "image_missing", f"cannot resolve {shorten(record.image)}: "
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
