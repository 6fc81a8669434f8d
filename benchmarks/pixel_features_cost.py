"""What the pixel statistics cost at extraction (``taomm prepare``'s call), in one run.

Three detectors of the demo's shape (ResNet-18, 128-channel pyramid, 128 px): the box head
alone, with the pixel statistics before the line and hem statistics, and with all of them
(the default); each extracts the regions of the same demo images one at a time, in
alternating rounds; prints ms per image for each and the ratios to the box head alone. Random weights:
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
    variants = {"box head alone": {"pixel_features": False},
                "pixel statistics before the object's inside": {"pixel_features": True, "pixel_interior": False},
                "pixel statistics (default)": {"pixel_features": True}}
    detectors = {name: ProductDetector(DetectorConfig(classes=classes, fpn_channels=128, min_size=128, max_size=256,
                                                      **settings)).eval() for name, settings in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in detectors}
    for _ in range(args.rounds):
        for name, detector in detectors.items():
            start = time.perf_counter()
            with autocast("cpu", args.bf16):
                for image in images:
                    detector.extract([image])
            times[name].append((time.perf_counter() - start) / len(images) * 1000)
    base = min(times["box head alone"])
    for name, runs in times.items():
        print(f"{name}: {min(runs):.1f} ms/image (best of {args.rounds} rounds over {len(images)} images), "
              f"ratio {min(runs) / base:.2f}")

if __name__ == "__main__":
    main()
