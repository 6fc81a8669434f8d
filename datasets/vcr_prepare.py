"""VCR images -> a feature store of their annotated regions (:func:`prepare_vcr`).

One store item per image, item id = ``img_fn``, empty title; its regions are the metadata
boxes (what the question tags point at; the first ``max_regions``) with features at those
boxes from a :data:`BoxFeatures` function (a detector's box head:
:func:`taomm.detectors.extract.box_feature_extractor`); label = the object name's Visual
Genome class (``vg1600``) or -1; score = the box's annotated score. The annotation files
are copied to ``STORE/vcr/<split>.jsonl``, so finetuning needs the store alone. A store
built another way (pre-extracted features) serves as well when its item ids are the
``img_fn``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from taomm.datasets.images import ImageError, resolve_image_path
from taomm.datasets.prepare import (
    SPLITS,
    PrepareReport,
    PrepareRun,
    one_by_one,
    prepare_run,
    uint8_image,
)
from taomm.datasets.store import Item, StoreWriter
from taomm.datasets.vcr_format import IMAGES_DIR, STORE_DIR, read_vcr
from taomm.errors import TaommError
from taomm.taxonomy import Taxonomy, load_taxonomy

TAXONOMY = "vg1600"
MAX_METADATA_BYTES = 64 << 20
# (3, H, W) uint8 image, (N, 4) float32 pixel boxes -> (N, D) features
BoxFeatures = Callable[[torch.Tensor, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class _Image:
    img_fn: str
    metadata_fn: str
    objects: tuple[str, ...]


def image_regions(metadata: Any, objects: Sequence[str], width: int, height: int,
                  max_regions: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Boxes (N, 4) in pixels of the decoded image, scores (N,) and names of a metadata
    object, at most ``max_regions``; the whole image when it has no box."""
    if not isinstance(metadata, dict) or not isinstance(metadata.get("boxes", []), list):
        raise ValueError("metadata must be a JSON object with a list of boxes")
    rows = metadata.get("boxes", [])[:max_regions]
    if not all(isinstance(b, list) and 4 <= len(b) <= 5 and all(type(v) in (int, float) for v in b) for b in rows):
        raise ValueError("each box must be [x1, y1, x2, y2, score] numbers")
    if not rows:
        return np.asarray([[0, 0, width, height]], np.float32), np.ones(1, np.float32), [""]
    boxes = np.asarray([b[:4] for b in rows], dtype=np.float64)
    scores = np.asarray([b[4] if len(b) == 5 else 1.0 for b in rows], dtype=np.float64)
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise ValueError("boxes and scores must be finite")
    meta_w, meta_h = metadata.get("width"), metadata.get("height")
    if type(meta_w) in (int, float) and type(meta_h) in (int, float) and meta_w > 0 and meta_h > 0:
        boxes *= [width / meta_w, height / meta_h] * 2  # boxes are in the metadata's image size
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    for lo, hi, size in ((0, 2, width), (1, 3, height)):  # at least one pixel, inside the image
        boxes[:, hi] = np.maximum(boxes[:, hi], np.minimum(boxes[:, lo] + 1, size))
        boxes[:, lo] = np.minimum(boxes[:, lo], boxes[:, hi] - 1)
    names = metadata.get("names")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        names = list(objects)
    names = [names[i] if i < len(names) else "" for i in range(len(rows))]
    return boxes.astype(np.float32), scores.clip(0, 1).astype(np.float32), names


class _VcrImages(Dataset):
    """Decodes an image and reads its metadata (in DataLoader workers)."""

    def __init__(self, root: Path, images: list[_Image], max_regions: int) -> None:
        self.root, self.images, self.max_regions = root, images, max_regions

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        entry = self.images[index]
        try:
            image = uint8_image(resolve_image_path(self.root, entry.img_fn))
        except ImageError as exc:
            return index, None, None, exc.reason, exc.detail
        height, width = image.shape[1:]
        try:
            path = resolve_image_path(self.root, entry.metadata_fn)
            if path.stat().st_size > MAX_METADATA_BYTES:
                raise ValueError(f"larger than {MAX_METADATA_BYTES} bytes")
            metadata = json.loads(path.read_text("utf-8", errors="replace"))
            regions = image_regions(metadata, entry.objects, width, height, self.max_regions)
        except ImageError as exc:
            reason = exc.reason if exc.reason == "path_outside_root" else "bad_metadata"
            return index, None, None, reason, exc.detail
        except (ValueError, RecursionError, OSError) as exc:
            return index, None, None, "bad_metadata", f"{entry.metadata_fn}: {str(exc)[:120]}"
        return index, image, regions, None, None


def prepare_vcr(root: str | os.PathLike[str], store: str | os.PathLike[str], extract: BoxFeatures,
                splits: Sequence[str] | None = None, feature_dim: int | None = None, max_regions: int = 100,
                workers: int = 2, batch_size: int = 256,
                on_progress: Callable[[int], None] | None = None) -> PrepareReport:
    """VCR images -> a store of their annotated regions (see the module docstring).

    ``root`` holds ``<split>.jsonl`` and ``vcr1images/``; ``splits`` default to those of
    train, val and test present. ``extract`` gives the features at given boxes, of size
    ``feature_dim``. Resumable as ``taomm prepare``: images in the store are skipped; bad
    lines and images end in STORE/quarantine.jsonl with a reason."""
    root, store = Path(root), Path(store)
    if feature_dim is None:
        raise TaommError("prepare_vcr needs feature_dim with an extract function")
    if splits is None:
        splits = [s for s in SPLITS if (root / f"{s}.jsonl").is_file()]
    if not splits:
        raise TaommError(f"{root} holds none of {', '.join(s + '.jsonl' for s in SPLITS)}: not a VCR folder")
    taxonomy = load_taxonomy(TAXONOMY)
    advance = on_progress or (lambda count: None)
    with prepare_run(store) as run:
        start = time.perf_counter()
        images, split_ids = _read_annotations(run, root, splits)
        run.report.inputs += len(images)
        run.report.seconds["annotations"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        run.kept = [(img_fn, None) for img_fn in images if img_fn in run.done]
        advance(len(run.kept))
        with run.writer(language="en", feature_dim=feature_dim, taxonomy=TAXONOMY, classes=taxonomy.classes,
                        batch_size=batch_size) as writer:
            pending = [image for img_fn, image in images.items() if img_fn not in run.done]
            _add_images(run, writer, _VcrImages(root / IMAGES_DIR, pending, max_regions), extract, taxonomy,
                        workers, advance)
            kept = {img_fn for img_fn, _ in run.kept}
            run.record_splits(writer, {split: [i for i in ids if i in kept] for split, ids in split_ids.items()})
            run.report.seconds["images_and_regions"] = round(time.perf_counter() - start, 3)
        return run.finish()


def _read_annotations(run: PrepareRun, root: Path, splits: Sequence[str]) -> tuple[dict[str, _Image],
                                                                                  dict[str, list[str]]]:
    """The images of ``splits`` by img_fn and each split's img_fn in order; bad lines go to
    the quarantine and the files are copied into the store."""
    images: dict[str, _Image] = {}
    split_ids: dict[str, list[str]] = {}
    for split in splits:
        path = root / f"{split}.jsonl"
        if not path.is_file():
            raise TaommError(f"no {path}: the VCR folder must hold {split}.jsonl and {IMAGES_DIR}/")
        annotations = read_vcr(path)
        for r in annotations.rejected:
            run.reject_input(r.line, r.annot_id, r.reason, f"{split}.jsonl: {r.detail}")
        for q in annotations.questions:
            images.setdefault(q.img_fn, _Image(q.img_fn, q.metadata_fn, q.objects))
        split_ids[split] = list(dict.fromkeys(q.img_fn for q in annotations.questions))
        (run.store / STORE_DIR).mkdir(parents=True, exist_ok=True)
        tmp = run.store / STORE_DIR / f".{split}.jsonl.tmp"
        shutil.copyfile(path, tmp)
        os.replace(tmp, run.store / STORE_DIR / f"{split}.jsonl")
    return images, split_ids


def _add_images(run: PrepareRun, writer: StoreWriter, images: _VcrImages, extract: BoxFeatures,
                taxonomy: Taxonomy, workers: int, advance: Callable[[int], None]) -> None:
    """Decode each image (in worker processes) and write it with its regions."""
    for i, image, regions, reason, detail in one_by_one(images, workers):
        entry = images.images[i]
        if image is None:
            run.quarantine(0, entry.img_fn, reason, detail)
        else:
            boxes, scores, names = regions
            labels = np.asarray([taxonomy.lookup(n) for n in names], dtype=np.int32)
            writer.add(Item(entry.img_fn, "", np.zeros(0, np.int32), int(image.shape[2]), int(image.shape[1]),
                            boxes, extract(image, boxes), labels, scores))
            run.kept.append((entry.img_fn, None))
        advance(1)
