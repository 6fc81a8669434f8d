"""What the pixel statistics cost at extraction (``taomm prepare``'s call), in one run.

Two detectors of the demo's shape (ResNet-18, 128-channel pyramid, 128 px), one with the
pixel statistics and one without, extract the regions of the same demo images one at a
time, in alternating rounds; prints ms per image for each and the ratio. Random weights:
the cost does not depend on what the detector learned (50 proposals either way).

    python benchmarks/pixel_features_cost.py [--images 60] [--rounds 3] [--bf16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from taomm.datasets.demo_catalog import generate_catalog
from taomm.detectors.detector import DetectorConfig, ProductDetector
from taomm.detectors.training import CocoBoxes
from taomm.device import autocast
from taomm.taxonomy import load_taxonomy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast where the hardware has it (as prepare)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Path(tmp) / "catalog"
        generate_catalog(catalog, items=args.images, seed=0)
        data = CocoBoxes(catalog / "annotations.json", catalog / "images")
        images = [data[i][0] for i in range(len(data))]
    torch.manual_seed(0)
    classes = list(load_taxonomy("taobao33").classes)
    detectors = {flag: ProductDetector(DetectorConfig(classes=classes, fpn_channels=128, min_size=128, max_size=256,
                                                      pixel_features=flag)).eval() for flag in (False, True)}
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for flag, detector in detectors.items():
            start = time.perf_counter()
            with autocast("cpu", args.bf16):
                for image in images:
                    detector.extract([image])
            times[flag].append((time.perf_counter() - start) / len(images) * 1000)
    without, with_pixels = min(times[False]), min(times[True])
    print(f"box head alone: {without:.1f} ms/image; with the pixel statistics: {with_pixels:.1f} ms/image "
          f"(best of {args.rounds} rounds over {len(images)} images); ratio {with_pixels / without:.2f}")


if __name__ == "__main__":
    main()
