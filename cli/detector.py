"""``taomm train-detector`` and ``taomm evaluate-detector``: the product detector on COCO boxes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taomm.cli.common import JsonOpt, WorkspaceOpt, print_json, progress_bar, stderr_console
from taomm.errors import TaommError
from taomm.workspace import Workspace, find_workspace

DETECTOR_DIR = "detector"  # under the workspace's runs/

AnnotationsOpt = Annotated[Path | None, typer.Option("--annotations", help="COCO detection JSON. Default: the workspace's.")]
ImagesOpt = Annotated[Path | None, typer.Option("--images", help="Folder of the COCO file_names. Default: ANNOTATIONS' folder/images.",
                                                file_okay=False)]
SplitOpt = Annotated[str | None, typer.Option("--split", help="Only the images of the manifest's items of this split "
                                              "(needs COCO images with item_id; default in a workspace: train / test).")]


def _resolve(annotations: Path | None, images: Path | None, workspace: Path | None, split: str | None,
             default_split: str) -> tuple[Path, Path, list[int] | None, Workspace | None]:
    ws = find_workspace(workspace)
    if annotations is None:
        if ws is None or ws.source("annotations") is None:
            raise TaommError("no annotations: pass --annotations COCO.json, or run inside a workspace with "
                             "sources.annotations (taomm init --demo)")
        annotations = ws.source("annotations")
    images = images or annotations.parent / "images"
    ids = None
    manifest = ws.source("manifest") if ws else None
    split = split or (default_split if manifest else None)
    if split:
        from taomm.detectors.training import image_ids_for_split

        if manifest is None:
            raise TaommError("--split needs a workspace manifest with splits")
        ids = image_ids_for_split(annotations, manifest, split)
        if not ids:
            raise TaommError(f"no annotated image belongs to split {split!r} of {manifest}")
    return annotations, images, ids, ws


def train_detector_command(
    annotations: AnnotationsOpt = None,
    images: ImagesOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Detector folder. Default: the workspace's runs/detector.",
                                             file_okay=False)] = None,
    backbone: Annotated[str, typer.Option("--backbone", help="resnet18 (CPU), resnet34 or resnet50.")] = "resnet18",
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Training steps.")] = 300,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Passes over the images (overrides --max-steps).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    image_size: Annotated[int, typer.Option("--image-size", min=32, help="Short side images are resized to "
                                            "(long side at most twice that); kept for extraction.")] = 128,
    lr: Annotated[float, typer.Option("--lr", help="Peak SGD learning rate (after warm-up).")] = 0.02,
    bf16: Annotated[bool, typer.Option("--bf16/--fp32", help="bf16 autocast (about 4x faster on this kind of CPU).")] = True,
    workers: Annotated[int, typer.Option("--workers", min=0, help="DataLoader workers.")] = 2,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda. Default: cuda when available.")] = "",
    lang: Annotated[str, typer.Option("--lang", help="Taxonomy: zh (taobao33).")] = "zh",
    split: SplitOpt = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train the product detector from scratch on COCO-format boxes (no weights can be downloaded)."""
    import torch

    from taomm.detectors.training import train_detector
    from taomm.taxonomy import DEFAULT_TAXONOMY, load_taxonomy

    annotations, images, ids, ws = _resolve(annotations, images, workspace, split, "train")
    if out is None:
        if ws is None:
            raise TaommError("no --out and no workspace: pass --out DIR")
        out = ws.path("runs") / DETECTOR_DIR
    if lang not in DEFAULT_TAXONOMY:
        raise TaommError(f"no detector taxonomy for language {lang!r} yet")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    classes = list(load_taxonomy(DEFAULT_TAXONOMY[lang]).classes)
    with progress_bar("training detector", max_steps if epochs is None else None) as advance:
        result = train_detector(annotations, images, out, classes, backbone=backbone, max_steps=max_steps,
                                epochs=epochs, batch_size=batch_size, lr=lr, bf16=bf16, workers=workers,
                                device=device, image_ids=ids, image_size=image_size, on_step=lambda step, loss: advance(1))
    summary = {"detector": str(Path(out).resolve()), "steps": result.steps, "seconds": round(result.seconds, 1),
               "first_loss": round(result.losses[0], 4), "final_loss": round(result.final_loss, 4),
               "images": len(ids) if ids is not None else None}
    if json_out:
        print_json(summary)
    else:
        stderr_console().print(f"trained {summary['steps']} steps in {summary['seconds']} s, loss "
                               f"{summary['first_loss']} -> {summary['final_loss']}; saved to {summary['detector']}")


def evaluate_detector_command(
    detector: Annotated[Path | None, typer.Option("--detector", help="Detector folder. Default: the workspace's.",
                                                  file_okay=False)] = None,
    annotations: AnnotationsOpt = None,
    images: ImagesOpt = None,
    split: SplitOpt = None,
    workers: Annotated[int, typer.Option("--workers", min=0)] = 2,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """COCO mAP (IoU 0.5:0.95) and mAP@0.5 of the detector, with pycocotools."""
    from taomm.detectors.detector import ProductDetector
    from taomm.detectors.training import evaluate_detector

    annotations, images, ids, ws = _resolve(annotations, images, workspace, split, "test")
    if detector is None:
        if ws is None:
            raise TaommError("no --detector and no workspace: pass --detector DIR")
        detector = ws.path("runs") / DETECTOR_DIR
    model = ProductDetector.load(detector)
    with progress_bar("evaluating detector", len(ids) if ids is not None else None) as advance:
        metrics = evaluate_detector(model, annotations, images, image_ids=ids, workers=workers, on_batch=advance)
    if json_out:
        print_json(metrics)
    else:
        typer.echo(f"mAP {metrics['mAP']:.3f}   mAP@0.5 {metrics['mAP@0.5']:.3f}   "
                   f"({metrics['images']} images, {metrics['detections']} detections)")


def register(app: typer.Typer) -> None:
    app.command("train-detector", epilog="Examples:  taomm train-detector   |   taomm train-detector --annotations "
                "catalog/annotations.json --images catalog/images --out detector --max-steps 150")(train_detector_command)
    app.command("evaluate-detector", epilog="Examples:  taomm evaluate-detector   |   taomm evaluate-detector "
                "--detector detector --annotations val.json --images val/")(evaluate_detector_command)
