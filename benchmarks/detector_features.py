"""What the region features carry, detector recipe by recipe, in one run.

Generates a demo catalog (or uses --catalog), then for each recipe trains a detector on the
train split from scratch and reports, on the test split: COCO mAP / mAP@0.5, the linear
probe per attribute group (colour, pattern, product, style) on the regions extraction
returns, beside the majority baseline, and the seconds per training step. The recipes
differ only in the settings named; everything else is the demo's (ResNet-18-FPN, batch 8,
SGD lr 0.02, --steps steps).

    python benchmarks/detector_features.py [--steps 250] [--image-size 128] \\
        [--recipe 'name={"pixel_features": false, "fpn_channels": 256}' ...]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from taomm.datasets.demo_catalog import generate_catalog
from taomm.detectors.detector import ProductDetector
from taomm.detectors.probe import probe_detector
from taomm.detectors.training import evaluate_detector, image_ids_for_split, train_detector
from taomm.taxonomy import load_taxonomy

RECIPES = {
    "pixel statistics without the object's inside (before)": {"fpn_channels": 128, "pixel_interior": False},
    "pixel statistics with texture, colour and lines of the inside (demo)": {"fpn_channels": 128},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, help="A demo catalog (default: generate 2,000 items, seed 0)")
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--probe-images", type=int, default=600, help="train images the probe is fitted on")
    parser.add_argument("--recipe", action="append", default=[], help='NAME={"setting": value, ...}')
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    recipes = dict(RECIPES)
    if args.recipe:
        recipes = {name: json.loads(settings) for name, settings in (r.split("=", 1) for r in args.recipe)}
    with tempfile.TemporaryDirectory() as tmp:
        catalog = args.catalog
        if catalog is None:
            catalog = Path(tmp) / "catalog"
            generate_catalog(catalog, items=2000, seed=0, workers=os.cpu_count() or 1)
        annotations, manifest, images = catalog / "annotations.json", catalog / "items.jsonl", catalog / "images"
        train_ids = image_ids_for_split(annotations, manifest, "train")
        test_ids = image_ids_for_split(annotations, manifest, "test")
        classes = list(load_taxonomy("taobao33").classes)
        rows = {}
        for name, settings in recipes.items():
            out = Path(tmp) / f"detector-{len(rows)}"
            result = train_detector(annotations, images, out, classes, max_steps=args.steps,
                                    image_size=args.image_size, image_ids=train_ids, seed=0, **settings)
            detector = ProductDetector.load(out)
            metrics = evaluate_detector(detector, annotations, images, image_ids=test_ids)
            start = time.perf_counter()
            probe = probe_detector(detector, annotations, images, train_ids[:args.probe_images], test_ids, bf16=True)
            rows[name] = {"settings": settings, "s_per_step": round(result.seconds / result.steps, 3),
                          "mAP": round(metrics["mAP"], 3), "mAP@0.5": round(metrics["mAP@0.5"], 3),
                          "boxes_mAP@0.5": round(metrics["boxes_mAP@0.5"], 3),
                          "probe": probe["groups"], "probe_seconds": round(time.perf_counter() - start, 1)}
            if not args.json:
                _print_row(name, rows[name])
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))


def _print_row(name: str, row: dict) -> None:
    probe = "  ".join(f"{g} {r['accuracy']:.3f} (majority {r['majority']:.3f})" for g, r in row["probe"].items())
    print(f"{name}: {row['s_per_step']} s/step, mAP {row['mAP']}, mAP@0.5 {row['mAP@0.5']} (any class {row['boxes_mAP@0.5']})\n    probe: {probe}",
          flush=True)


if __name__ == "__main__":
    main()
