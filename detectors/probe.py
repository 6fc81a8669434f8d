"""What the region features carry: a linear probe per attribute group.

For each annotated box of an image the probe takes the region that extraction (the same
call ``taomm prepare`` makes) returns with the highest IoU to it, and pairs that region's
feature with the box's attributes (colour, pattern, product, style: whichever the COCO
file's ``attribute_vocab`` lists). A multinomial logistic regression per group is fitted
on the train images and scored on the test images, beside the majority-class baseline
(the train split's most frequent value, scored on the test split).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from taomm.detectors.detector import MAX_REGIONS, MIN_SCORE, ProductDetector
from taomm.detectors.training import CocoBoxes
from taomm.device import autocast


@dataclass
class RegionSamples:
    """One row per annotated box: the matched region's feature and the box's attribute values."""

    features: np.ndarray  # (N, D) float32
    values: dict[str, list[str | None]]  # group -> N values (None where the box has none)
    iou: np.ndarray  # (N,) IoU of the matched region with the annotated box


class _Collector:
    """Pairs each annotated box with the region of highest IoU among an image's regions."""

    def __init__(self, data: CocoBoxes) -> None:
        self.data = data
        self.features: list[np.ndarray] = []
        self.ious: list[np.ndarray] = []
        self.values: dict[str, list[str | None]] = {g: [] for g in data.attribute_vocab}

    def add(self, index: int, boxes: torch.Tensor, features: np.ndarray) -> None:
        anns = self.data.annotations[self.data.images[index]["id"]]
        target = self.data.target(index)["boxes"]
        best_iou, best = box_iou(target, boxes.float()).max(1)  # (annotated boxes,)
        self.features.append(np.asarray(features, dtype=np.float32)[best.numpy()])
        self.ious.append(best_iou.numpy())
        for ann in anns:
            attrs = ann.get("attributes", {})
            for group, names in self.data.attribute_vocab.items():
                value = attrs.get(group)
                self.values[group].append(value if value in names else None)

    def samples(self, dim: int) -> RegionSamples:
        if not self.features:
            return RegionSamples(np.zeros((0, dim), np.float32), self.values, np.zeros(0, np.float32))
        return RegionSamples(np.concatenate(self.features), self.values, np.concatenate(self.ious))


def region_samples(detector: ProductDetector, data: CocoBoxes, device: str = "cpu", bf16: bool = False,
                   max_regions: int = MAX_REGIONS, min_score: float = MIN_SCORE,
                   on_image: Callable[[int], None] | None = None) -> RegionSamples:
    """Extract each image's regions as ``prepare`` does (one image at a time) and match every
    annotated box to its best-overlapping region."""
    detector = detector.to(device).eval()
    collector = _Collector(data)
    for index in range(len(data)):
        image, _, _ = data[index]
        with autocast(device, bf16):
            (regions,) = detector.extract([image.to(device)], max_regions, min_score)
        collector.add(index, regions["boxes"].cpu(), regions["features"].float().cpu().numpy())
        if on_image is not None:
            on_image(1)
    return collector.samples(detector.config.representation_size)


def store_samples(store: Any, data: CocoBoxes) -> RegionSamples:
    """The same pairing from a feature store's regions (what ``prepare`` stored): COCO images
    are found by their ``item_id``; images whose item is not in the store are skipped."""
    collector = _Collector(data)
    dim = 0
    for index, info in enumerate(data.images):
        item_id = info.get("item_id")
        if item_id is None or item_id not in store:
            continue
        item = store.get(str(item_id))
        dim = item.features.shape[1]
        collector.add(index, torch.from_numpy(np.array(item.boxes)), item.features)
    return collector.samples(dim)


def fit_linear_probe(x: np.ndarray, y: np.ndarray, classes: int, weight_decay: float = 1e-3,
                     steps: int = 200) -> Callable[[np.ndarray], np.ndarray]:
    """Multinomial logistic regression (standardised inputs, L2 penalty, L-BFGS); returns a
    function from features to predicted class indices."""
    torch.manual_seed(0)
    mean, std = x.mean(0), x.std(0) + 1e-6
    inputs = torch.from_numpy((x - mean) / std).float()
    targets = torch.from_numpy(y).long()
    linear = torch.nn.Linear(x.shape[1], classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(inputs), targets) + weight_decay * linear.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)

    def predict(features: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return linear(torch.from_numpy((features - mean) / std).float()).argmax(1).numpy()

    return predict


def probe_attributes(train: RegionSamples, test: RegionSamples, vocab: dict[str, list[str]]) -> dict[str, Any]:
    """Per attribute group: probe accuracy on the test boxes, the majority baseline, and the
    number of train and test boxes that carry the group."""
    out: dict[str, Any] = {}
    for group, names in vocab.items():
        index = {name: i for i, name in enumerate(names)}
        rows_train = [i for i, v in enumerate(train.values.get(group, [])) if v is not None]
        rows_test = [i for i, v in enumerate(test.values.get(group, [])) if v is not None]
        if not rows_train or not rows_test:
            continue
        y_train = np.array([index[train.values[group][i]] for i in rows_train])
        y_test = np.array([index[test.values[group][i]] for i in rows_test])
        majority = np.bincount(y_train, minlength=len(names)).argmax()
        if len(set(y_train.tolist())) > 1:
            predict = fit_linear_probe(train.features[rows_train], y_train, len(names))
            accuracy = float((predict(test.features[rows_test]) == y_test).mean())
        else:
            accuracy = float((y_test == majority).mean())
        out[group] = {"accuracy": round(accuracy, 4), "majority": round(float((y_test == majority).mean()), 4),
                      "train": len(rows_train), "test": len(rows_test)}
    return out


def probe_detector(detector: ProductDetector, annotations: str | os.PathLike[str], images: str | os.PathLike[str],
                   train_ids: list[int] | None, test_ids: list[int] | None, device: str = "cpu", bf16: bool = False,
                   on_image: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The linear probe of every attribute group the annotations carry, on the region
    features extraction gives for the train and test images."""
    train_data = CocoBoxes(annotations, images, train_ids)
    test_data = CocoBoxes(annotations, images, test_ids)
    if not train_data.attribute_vocab:
        return {}
    train = region_samples(detector, train_data, device, bf16, on_image=on_image)
    test = region_samples(detector, test_data, device, bf16, on_image=on_image)
    groups = probe_attributes(train, test, train_data.attribute_vocab)
    return {"groups": groups, "boxes": {"train": len(train.iou), "test": len(test.iou)},
            "mean_iou": round(float(test.iou.mean()), 4) if len(test.iou) else None}


__all__ = ["RegionSamples", "fit_linear_probe", "probe_attributes", "probe_detector", "region_samples",
           "store_samples"]
