"""`prepare` throughput on CPU, and class-agnostic NMS vs torchvision's per-class batched_nms.

1. Throughput: a demo catalog (``--items``) through ``prepare_store`` with the demo-sized
   detector (ResNet-18-FPN, 192 px; trained weights or random ones: the compute is the
   same), timed per stage: titles/s (manifest + text pipeline) and images/s (decode +
   detection + store writes).
2. NMS: for proposals with per-class boxes and scores (as the box predictor gives them),
   taomm's extraction keeps each proposal's best class and runs one class-agnostic NMS;
   torchvision's post-processing runs ``batched_nms`` over every (proposal, class) pair
   above the score threshold. Both are asked for the top 16; both timed in this run.

    python benchmarks/prepare.py [--items 300] [--detector DIR] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torchvision.ops import batched_nms, nms

from taomm.datasets.demo_catalog import generate_catalog
from taomm.datasets.prepare import prepare_store
from taomm.detectors.detector import DetectorConfig, ProductDetector
from taomm.detectors.extract import detector_extractor
from taomm.taxonomy import load_taxonomy


def nms_comparison(proposals: int = 300, classes: int = 33, images: int = 200, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    data = []
    for _ in range(images):
        xy = torch.rand(proposals, 1, 2, generator=g) * 150
        wh = torch.rand(proposals, classes, 2, generator=g) * 40 + 5
        boxes = torch.cat([xy.expand(-1, classes, -1), xy + wh], -1)  # (P, C, 4)
        scores = torch.softmax(torch.randn(proposals, classes + 1, generator=g) * 3, -1)[:, 1:]
        data.append((boxes, scores))

    def agnostic(boxes, scores):
        score, label = scores.max(-1)
        best = boxes[torch.arange(len(boxes)), label]
        keep = (score > 0.1).nonzero().squeeze(1)
        return keep[nms(best[keep], score[keep], 0.3)][:16]

    def per_class(boxes, scores):
        flat_boxes, flat_scores = boxes.reshape(-1, 4), scores.reshape(-1)
        labels = torch.arange(scores.shape[1]).repeat(scores.shape[0])
        keep = (flat_scores > 0.1).nonzero().squeeze(1)
        return keep[batched_nms(flat_boxes[keep], flat_scores[keep], labels[keep], 0.3)][:16]

    out = {}
    for name, fn in (("class_agnostic_nms", agnostic), ("torchvision_batched_nms", per_class)):
        for boxes, scores in data[:5]:
            fn(boxes, scores)
        start = time.perf_counter()
        for boxes, scores in data:
            fn(boxes, scores)
        out[name + "_ms_per_image"] = round((time.perf_counter() - start) / images * 1000, 3)
    out["ratio"] = round(out["torchvision_batched_nms_ms_per_image"] / out["class_agnostic_nms_ms_per_image"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--detector", type=Path, help="a trained detector folder (default: random weights)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="detect under bf16 autocast")
    args = parser.parse_args()
    torch.manual_seed(0)
    classes = list(load_taxonomy("taobao33").classes)
    detector = ProductDetector.load(args.detector) if args.detector else ProductDetector(DetectorConfig(classes=classes))
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Path(tmp) / "catalog"
        generate_catalog(catalog, items=args.items, seed=0)
        report = prepare_store(catalog / "items.jsonl", Path(tmp) / "store", detector_extractor(detector.eval(), bf16=args.bf16),
                               detector.config.representation_size, "taobao33", classes, workers=args.workers)
    text_s = report.seconds["manifest_and_text"]
    image_s = report.seconds["images_and_regions"]
    result = {
        "items": args.items, "ok": report.ok, "quarantined": report.quarantined, "reasons": report.reasons,
        "detector": str(args.detector) if args.detector else "random weights (same compute)", "bf16": args.bf16,
        "titles_per_s": round(report.inputs / text_s, 1), "images_per_s": round(report.written / image_s, 2),
        **nms_comparison(),
    }
    print(f"prepare ({args.items} demo items, {args.workers} workers): {result['titles_per_s']} titles/s "
          f"(manifest + text), {result['images_per_s']} images/s (decode + detection + store)")
    print(f"NMS for the top 16 of 300 proposals x 33 classes: class-agnostic {result['class_agnostic_nms_ms_per_image']} "
          f"ms/image, torchvision batched_nms {result['torchvision_batched_nms_ms_per_image']} ms/image "
          f"(ratio {result['ratio']}x)")
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
