"""Training and evaluating the product detector on COCO-format boxes.

COCO ``category_id`` is the taxonomy id (0..C-1), as in the demo catalog. An annotation may
carry ``attributes`` (e.g. ``{"colour": "红色", "pattern": "波点"}``) with the file's
``attribute_vocab``; the detector's attribute head learns them.

The demo's detector trains from scratch (trainable BatchNorm, linear warm-up, gradient
clipping, bf16 autocast where the hardware has it), as measured in DESIGN.md section 5. A
real catalog starts from torchvision's pretrained weights (``weights="coco"``, ``"imagenet"``
or a local file in torchvision's layout) with frozen BatchNorm, as torchvision finetunes.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from taomm.datasets.images import ImageError, load_image, resolve_image_path
from taomm.datasets.manifest import iter_json_objects
from taomm.detectors.detector import (
    DetectorConfig,
    ProductDetector,
    load_pretrained,
    pretrained_state,
)
from taomm.device import autocast
from taomm.errors import OptionError, TaommError


def image_tensor(path: Path) -> torch.Tensor:
    """(3, H, W) float in [0, 1] of a safely decoded image."""
    array = np.asarray(load_image(path), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255)


class CocoBoxes(Dataset):
    """Images with their boxes from a COCO detection file (images without boxes are skipped)."""

    def __init__(self, annotations: str | os.PathLike[str], images: str | os.PathLike[str],
                 image_ids: list[int] | None = None) -> None:
        try:
            coco = json.loads(Path(annotations).read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise TaommError(f"cannot read COCO annotations {annotations}: {exc}") from None
        self.root = Path(images)
        self.categories = {c["id"]: c["name"] for c in coco.get("categories", [])}
        self.attribute_vocab: dict[str, list[str]] = coco.get("attribute_vocab", {})
        by_image: dict[int, list[dict]] = {}
        for ann in coco.get("annotations", []):
            if not ann.get("iscrowd", 0):
                by_image.setdefault(ann["image_id"], []).append(ann)
        wanted = None if image_ids is None else set(image_ids)
        self.images = [im for im in coco.get("images", []) if im["id"] in by_image
                       and (wanted is None or im["id"] in wanted)]
        self.annotations = by_image

    def __len__(self) -> int:
        return len(self.images)

    def target(self, index: int) -> dict[str, torch.Tensor]:
        anns = self.annotations[self.images[index]["id"]]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype=torch.float32)
        out = {"boxes": boxes, "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)}
        if self.attribute_vocab and all("attributes" in a for a in anns):
            out["attributes"] = self.attribute_targets(anns)
        return out

    def attribute_targets(self, anns: list[dict]) -> torch.Tensor:
        names = list(self.attribute_vocab)
        offsets = np.cumsum([0] + [len(self.attribute_vocab[n]) for n in names])
        out = torch.zeros(len(anns), int(offsets[-1]))
        for i, ann in enumerate(anns):
            for name, offset in zip(names, offsets, strict=False):
                value = ann["attributes"].get(name)
                if value in self.attribute_vocab[name]:
                    out[i, offset + self.attribute_vocab[name].index(value)] = 1.0
        return out

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        info = self.images[index]
        path = resolve_image_path(self.root, info["file_name"])
        return image_tensor(path), self.target(index), info["id"]


def image_ids_for_split(annotations: str | os.PathLike[str], manifest: str | os.PathLike[str], split: str) -> list[int]:
    """COCO image ids whose ``item_id`` has ``split`` in the manifest (JSONL with item_id, split)."""
    splits = {str(row["item_id"]): row.get("split") for row in iter_json_objects(manifest) if "item_id" in row}
    coco = json.loads(Path(annotations).read_text("utf-8"))
    return [im["id"] for im in coco.get("images", []) if splits.get(str(im.get("item_id"))) == split]


def _collate(batch):
    return tuple(zip(*batch, strict=True))


@dataclass
class TrainResult:
    steps: int
    seconds: float
    final_loss: float
    losses: list[float]
    pretrained: dict[str, Any] | None = None  # what --weights loaded (load_pretrained's report)


def _new_detector(data: CocoBoxes, classes: list[str], backbone: str, image_size: int | None, weights: str | None,
                  fpn_channels: int, pixel_features: bool,
                  pixel_details: bool = True, pixel_interior: bool = True) -> tuple[ProductDetector, dict[str, Any] | None]:
    """The detector to train, with ``weights`` loaded (frozen BatchNorm, three trainable
    backbone stages, as torchvision does), and the load report (None from scratch)."""
    sizes = {} if image_size is None else {"min_size": image_size, "max_size": 2 * image_size}
    start_from = {} if weights is None else {"norm": "frozen", "trainable_layers": 3, "weights": str(weights)}
    model = ProductDetector(DetectorConfig(classes=list(classes), backbone=backbone, attributes=data.attribute_vocab,
                                           fpn_channels=fpn_channels, pixel_features=pixel_features,
                                           pixel_details=pixel_details, pixel_interior=pixel_interior, **sizes,
                                           **start_from))
    pretrained = None if weights is None else load_pretrained(model, pretrained_state(str(weights), backbone))
    return model, pretrained


def train_detector(annotations: str | os.PathLike[str], images: str | os.PathLike[str], out: str | os.PathLike[str],
                   classes: list[str], backbone: str = "resnet18", max_steps: int = 300, epochs: int | None = None,
                   batch_size: int = 8, lr: float = 0.02, warmup: int = 50, bf16: bool = True, workers: int = 2,
                   seed: int = 0, device: str = "cpu", image_ids: list[int] | None = None,
                   image_size: int | None = None, attribute_weight: float = 1.0,
                   attribute_rois: str = "sampled", weights: str | None = None, fpn_channels: int = 256,
                   pixel_features: bool = True, pixel_details: bool = True, pixel_interior: bool = True,
                   on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train a detector and save it to ``out`` (detector.json + detector.safetensors).

    Runs ``max_steps`` SGD steps (or ``epochs`` passes when given), linear warm-up then
    cosine decay, gradient clipping at 5, bf16 autocast when ``bf16``. ``image_size`` sets
    the short side images are resized to, the long side at most twice that (default: the
    detector config's 128..256). ``weights`` starts from torchvision's pretrained weights
    (``coco``, ``imagenet`` or a file in torchvision's layout, see
    :func:`~taomm.detectors.detector.pretrained_state`) with frozen BatchNorm and the last three
    backbone stages trained, as torchvision does; the box head and predictor are new layers.
    ``attribute_weight`` scales the attribute loss against the detection losses; with
    ``pixel_features`` a region vector ends with its pixels' statistics (:mod:`~taomm.detectors.pixels`);
    ``pixel_details=False`` leaves out their line and hem statistics, ``pixel_interior=False``
    those of the object's inside (the recipes before them)."""
    torch.manual_seed(seed)
    data = CocoBoxes(annotations, images, image_ids)
    if not len(data):
        raise TaommError(f"{annotations} has no image with boxes")
    unknown = sorted({c for c in data.categories if not 0 <= c < len(classes)})
    if unknown:
        raise TaommError(f"category ids {unknown[:5]} are outside the taxonomy of {len(classes)} classes")
    model, pretrained = _new_detector(data, classes, backbone, image_size, weights, fpn_channels, pixel_features,
                                      pixel_details, pixel_interior)
    model = model.to(device).train()
    if epochs is not None:
        max_steps = epochs * math.ceil(len(data) / batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    sampler = torch.utils.data.RandomSampler(data, replacement=True, num_samples=max_steps * batch_size,
                                             generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=_collate,
                        persistent_workers=False)
    losses: list[float] = []
    start = time.perf_counter()
    for step, (imgs, targets, _) in enumerate(loader):
        scale = min(1.0, (step + 1) / max(1, warmup)) * 0.5 * (1 + math.cos(math.pi * step / max(1, max_steps)))
        for group in optimizer.param_groups:
            group["lr"] = lr * scale
        imgs = [i.to(device) for i in imgs]
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        with autocast(device, bf16):
            loss_parts = model.losses(imgs, targets, attribute_rois=attribute_rois)
        if "loss_attributes" in loss_parts:
            loss_parts["loss_attributes"] = attribute_weight * loss_parts["loss_attributes"]
        loss = sum(loss_parts.values())
        if not torch.isfinite(loss):
            raise OptionError(f"detector training diverged at step {step} (loss {loss.item()}); lower {{lr}}", "lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        losses.append(float(loss.item()))
        if on_step is not None:
            on_step(step, losses[-1])
    model.eval().save(out)
    return TrainResult(len(losses), time.perf_counter() - start, losses[-1] if losses else math.nan, losses,
                       pretrained)


def evaluate_detector(detector: ProductDetector, annotations: str | os.PathLike[str], images: str | os.PathLike[str],
                      image_ids: list[int] | None = None, batch_size: int = 8, workers: int = 2,
                      on_batch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """COCO box mAP (IoU 0.5:0.95) and mAP@0.5 with pycocotools, on the given images, and
    ``boxes_mAP@0.5``: the same with every class as one (pycocotools' ``useCats=0``), which
    tells boxes in the wrong place from boxes of the wrong class."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data = CocoBoxes(annotations, images, image_ids)
    loader = DataLoader(data, batch_size=batch_size, num_workers=workers, collate_fn=_collate)
    results = []
    detector.eval()
    for imgs, _, ids in loader:
        for image_id, det in zip(ids, detector.detect(list(imgs)), strict=True):
            for box, label, score in zip(det["boxes"].tolist(), det["labels"].tolist(), det["scores"].tolist(),
                                         strict=True):
                results.append({"image_id": image_id, "category_id": label, "score": score,
                                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
        if on_batch is not None:
            on_batch(len(imgs))
    if not results:
        return {"mAP": 0.0, "mAP@0.5": 0.0, "boxes_mAP@0.5": 0.0, "images": len(data), "detections": 0}
    import contextlib
    import io

    stats = []
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its tables
        gt = COCO(str(annotations))
        found = gt.loadRes(results)
        for by_class in (1, 0):
            evaluation = COCOeval(gt, found, "bbox")
            evaluation.params.imgIds = [im["id"] for im in data.images]
            evaluation.params.useCats = by_class
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
            stats.append(evaluation.stats)
    return {"mAP": float(stats[0][0]), "mAP@0.5": float(stats[0][1]), "boxes_mAP@0.5": float(stats[1][1]),
            "images": len(data), "detections": len(results)}


__all__ = ["CocoBoxes", "ImageError", "TrainResult", "evaluate_detector", "image_ids_for_split", "image_tensor",
           "train_detector"]
