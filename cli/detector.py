"""``taomm train-detector`` and ``taomm evaluate-detector``: the product detector on COCO boxes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taomm.cli.common import (
    DeviceOpt,
    JsonOpt,
    WorkspaceOpt,
    print_json,
    progress_bar,
    stderr_console,
)
from taomm.device import resolve_device
from taomm.errors import TaommError
from taomm.workspace import DETECTOR_DIR, Workspace, find_workspace

if TYPE_CHECKING:
    from taomm.detectors.training import CocoBoxes, TrainResult

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


def _detector_dir(path: Path | None, ws: Workspace | None, flag: str) -> Path:
    """``path``, by default the workspace's runs/detector."""
    if path is not None:
        return path
    if ws is None:
        raise TaommError(f"no {flag.split()[0]} and no workspace: pass {flag}")
    return ws.path("runs") / DETECTOR_DIR


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
    weights: Annotated[str | None, typer.Option(
        "--weights", help="Start from pretrained weights: coco (torchvision's Faster R-CNN ResNet-50-FPN, needs "
        "--backbone resnet50), imagenet (the backbone's ImageNet weights), or a local file in torchvision's layout "
        "(.pth state dict or .safetensors). Frozen BatchNorm then; the 2048-d box head and the predictor are new. "
        "Default: from scratch.")] = None,
    fpn_channels: Annotated[int | None, typer.Option(
        "--fpn-channels", min=16, help="Width of the feature pyramid and RPN. Default: 128 from scratch (half the "
        "step time of torchvision's 256 on a CPU), 256 with --weights (the pretrained pyramid's).",
        show_default=False)] = None,
    attribute_weight: Annotated[float, typer.Option("--attribute-weight", min=0.0, help="Weight of the attribute "
                                                    "loss against the detection losses.")] = 1.0,
    pixel_features: Annotated[bool, typer.Option(
        "--pixel-features/--no-pixel-features", help="End each 2048-d region vector with fixed colour, texture, "
        "shape, silhouette, line and hem statistics of its pixels (1,343 dimensions; the box head learns the other 705): what a detector "
        "trained from scratch for a few hundred steps does not learn.")] = True,
    bf16: Annotated[bool, typer.Option("--bf16/--fp32", help="bf16 autocast where the hardware has bf16 (about 2.5x "
                                       "faster there; elsewhere fp32 is used).")] = True,
    workers: Annotated[int, typer.Option("--workers", min=0, help="DataLoader workers.")] = 2,
    device: DeviceOpt = "",
    lang: Annotated[str, typer.Option("--lang", help="Taxonomy: zh (taobao33).")] = "zh",
    split: SplitOpt = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train the product detector on COCO-format boxes: from scratch (the demo), or finetuned
    from torchvision's pretrained weights with --weights (real catalogs)."""
    from taomm.detectors.training import train_detector
    from taomm.taxonomy import DEFAULT_TAXONOMY, load_taxonomy

    annotations, images, ids, ws = _resolve(annotations, images, workspace, split, "train")
    out = _detector_dir(out, ws, "--out DIR")
    if lang not in DEFAULT_TAXONOMY:
        raise TaommError(f"no detector taxonomy for language {lang!r} yet")
    device = resolve_device(device)
    classes = list(load_taxonomy(DEFAULT_TAXONOMY[lang]).classes)
    with progress_bar("training detector", max_steps if epochs is None else None) as advance:
        result = train_detector(annotations, images, out, classes, backbone=backbone, max_steps=max_steps,
                                epochs=epochs, batch_size=batch_size, lr=lr, bf16=bf16, workers=workers,
                                device=device, image_ids=ids, image_size=image_size, weights=weights,
                                fpn_channels=fpn_channels or (256 if weights else 128),
                                attribute_weight=attribute_weight, pixel_features=pixel_features, on_step=lambda step, loss: advance(1))
    summary = _trained_summary(out, result, ids, weights)
    if json_out:
        print_json(summary)
    else:
        _print_trained(summary)


def _trained_summary(out: Path, result: TrainResult, ids: list[int] | None,
                     weights: str | None) -> dict[str, Any]:
    """What train-detector reports (--json): the run, and the pretrained weights it started from."""
    summary = {"detector": str(Path(out).resolve()), "steps": result.steps, "seconds": round(result.seconds, 1),
               "first_loss": round(result.losses[0], 4), "final_loss": round(result.final_loss, 4),
               "images": len(ids) if ids is not None else None}
    if result.pretrained is not None:
        summary["weights"] = {"from": weights, "layout": result.pretrained["layout"],
                              "loaded": result.pretrained["loaded"], "new": result.pretrained["new"],
                              "initialised": len(result.pretrained["initialised"])}
    return summary


def _print_trained(summary: dict[str, Any]) -> None:
    console = stderr_console()
    if "weights" in summary:
        w = summary["weights"]
        console.print(f"started from {w['from']} ({w['layout']} layout): {w['loaded']} tensors loaded, "
                      f"{len(w['new'])} replaced by new layers, {w['initialised']} initialised")
    console.print(f"trained {summary['steps']} steps in {summary['seconds']} s, loss "
                  f"{summary['first_loss']} -> {summary['final_loss']}; saved to {summary['detector']}")


def evaluate_detector_command(
    detector: Annotated[Path | None, typer.Option("--detector", help="Detector folder. Default: the workspace's.",
                                                  file_okay=False)] = None,
    annotations: AnnotationsOpt = None,
    images: ImagesOpt = None,
    split: SplitOpt = None,
    probe_split: Annotated[str | None, typer.Option(
        "--probe-split", help="Split the attribute probe is fitted on (default in a workspace: train). Without "
        "splits the probe fits on half of the evaluated images and scores the other half.")] = None,
    probe_images: Annotated[int, typer.Option("--probe-images", min=0, help="At most this many images to fit the "
                                              "probe on (0: no probe).")] = 600,
    workers: Annotated[int, typer.Option("--workers", min=0)] = 2,
    device: DeviceOpt = "",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """COCO mAP (IoU 0.5:0.95) and mAP@0.5 of the detector (pycocotools), and what its region
    features carry: a linear probe per attribute group of the annotations (colour, pattern,
    style, product ...) beside the majority-class baseline."""
    from taomm.detectors.detector import ProductDetector
    from taomm.detectors.probe import probe_detector
    from taomm.detectors.training import CocoBoxes, evaluate_detector

    annotations, images, ids, ws = _resolve(annotations, images, workspace, split, "test")
    detector = _detector_dir(detector, ws, "--detector DIR")
    device = resolve_device(device)
    model = ProductDetector.load(detector)
    with progress_bar("evaluating detector", len(ids) if ids is not None else None) as advance:
        metrics = evaluate_detector(model.to(device), annotations, images, image_ids=ids, workers=workers,
                                    on_batch=advance)
    annotated = CocoBoxes(annotations, images) if probe_images else None  # the file, read once
    if annotated is not None and annotated.attribute_vocab:
        probe_split, fit_ids, score_ids = _probe_images(annotated, annotations, ids, ws, probe_split, probe_images)
        with progress_bar("probing region features", len(fit_ids) + len(score_ids or [])) as advance:
            probe = probe_detector(model, annotations, images, fit_ids, score_ids, device=device, bf16=True,
                                   on_image=advance)
        metrics["probe"] = {"fit": probe_split or "half", **probe}
    if json_out:
        print_json(metrics)
    else:
        _print_metrics(metrics)


def _probe_images(annotated: CocoBoxes, annotations: Path, ids: list[int] | None, ws: Workspace | None,
                  probe_split: str | None, probe_images: int) -> tuple[str | None, list[int], list[int] | None]:
    """The split the attribute probe fits on (None: half of the evaluated images), the images
    it fits on and those it is scored on."""
    from taomm.detectors.training import image_ids_for_split

    all_ids = [im["id"] for im in annotated.images]
    manifest = ws.source("manifest") if ws else None
    probe_split = probe_split or ("train" if manifest and ids is not None else None)
    if probe_split:
        if manifest is None:
            raise TaommError("--probe-split needs a workspace manifest with splits")
        fit_ids = image_ids_for_split(annotations, manifest, probe_split)[:probe_images]
        fitted = set(fit_ids)
        score_ids = ids if ids is not None else [i for i in all_ids if i not in fitted]
    else:  # no splits: fit on every other evaluated image, score on the rest
        every = ids if ids is not None else all_ids
        fit_ids, score_ids = every[0::2][:probe_images], every[1::2]
    return probe_split, fit_ids, score_ids


def _print_metrics(metrics: dict[str, Any]) -> None:
    """mAP on stdout, then the probe's accuracy per attribute group beside the majority class."""
    typer.echo(f"mAP {metrics['mAP']:.3f}   mAP@0.5 {metrics['mAP@0.5']:.3f}   "
               f"({metrics['images']} images, {metrics['detections']} detections)")
    typer.echo(f"boxes alone (any class): mAP@0.5 {metrics['boxes_mAP@0.5']:.3f}")
    probe = metrics.get("probe")
    if probe and probe["groups"]:
        typer.echo(f"linear probe on the region features (fit on {probe['fit']}: {probe['boxes']['train']} boxes, "
                   f"scored on {probe['boxes']['test']}; mean IoU of the matched regions {probe['mean_iou']}):")
        typer.echo(f"  {'group':<10} {'probe':>6} {'majority':>9} {'boxes':>6}")
        for group, row in probe["groups"].items():
            typer.echo(f"  {group:<10} {row['accuracy']:>6.3f} {row['majority']:>9.3f} {row['test']:>6}")


def register(app: typer.Typer) -> None:
    app.command("train-detector", epilog="Examples:  taomm train-detector   |   taomm train-detector --annotations "
                "catalog/annotations.json --images catalog/images --out detector --max-steps 150   |   taomm train-detector "
                "--backbone resnet50 --weights coco --image-size 600 --epochs 12")(train_detector_command)
    app.command("evaluate-detector", epilog="Examples:  taomm evaluate-detector   |   taomm evaluate-detector "
                "--detector detector --annotations val.json --images val/")(evaluate_detector_command)
