"""``taomm prepare``: raw items (manifest + images) -> the feature store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taomm.cli.common import JsonOpt, WorkspaceOpt, print_json, progress_bar, stderr_console
from taomm.cli.detector import DETECTOR_DIR
from taomm.errors import TaommError
from taomm.workspace import find_workspace


def _shard(text: str) -> tuple[int, int]:
    try:
        index, total = (int(x) for x in text.split("/"))
    except ValueError:
        raise TaommError(f"--shard must look like I/N (e.g. 0/4), not {text!r}") from None
    return index, total


def prepare_command(
    manifest: Annotated[Path | None, typer.Argument(help="Items: JSONL or CSV with item_id, title, image (relative "
                                                    "to the manifest), split. Default: the workspace's.",
                                                    show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Store folder. Default: the workspace's store.",
                                             file_okay=False)] = None,
    detector: Annotated[Path | None, typer.Option("--detector", help="Detector folder. Default: the workspace's "
                                                  "runs/detector.", file_okay=False)] = None,
    lang: Annotated[str | None, typer.Option("--lang", help="zh or en. Default: the workspace's, else zh.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Image-decoding processes.")] = 2,
    max_regions: Annotated[int, typer.Option("--max-regions", min=1, help="Regions per image (paper: 16 for zh).")] = 16,
    shard: Annotated[str, typer.Option("--shard", help="I/N: prepare only the I-th of N disjoint parts, into "
                                       "STORE/shard-I-of-N (the folder then reads as one store).")] = "0/1",
    device: Annotated[str, typer.Option("--device", help="cpu or cuda. Default: cuda when available.")] = "",
    bf16: Annotated[bool, typer.Option("--bf16", help="Detect under bf16 autocast (about 1.3x faster on CPU).")] = False,
    features: Annotated[Path | None, typer.Option("--features", help="Import pre-extracted region features "
                                                  "(bottom-up-attention or KDD Cup 2020 TSV) instead of detecting.",
                                                  dir_okay=False)] = None,
    captions: Annotated[Path | None, typer.Option("--captions", help="With --features in bottom-up format: JSONL of "
                                                  "item_id (= image id), title, split.", dir_okay=False)] = None,
    feature_dim: Annotated[int, typer.Option("--feature-dim", min=1, help="With --features: region feature size.")] = 2048,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Clean titles, decode images, detect regions and write the feature store.

    Bad inputs never stop the run: each one is a line of STORE/quarantine.jsonl with a reason
    code; STORE/report.json has the counts. Killed and rerun, it resumes where it stopped.
    """
    import torch

    from taomm.datasets.prepare import detector_extractor, prepare_store
    from taomm.detectors.detector import ProductDetector
    from taomm.taxonomy import DEFAULT_TAXONOMY

    ws = find_workspace(workspace)
    lang = lang or (ws.config.language if ws else "zh")
    if lang not in DEFAULT_TAXONOMY:
        raise TaommError(f"no region taxonomy for language {lang!r} yet")
    index, total = _shard(shard)
    if out is None and ws is not None:
        out = ws.path("store")
    if out is not None and total > 1:
        from taomm.datasets.sharded import shard_folder

        out = shard_folder(out, index, total)  # read back as one store: taomm inspect STORE
    if features is not None:
        _import_features(features, captions, out, lang, feature_dim, max_regions, (index, total), json_out)
        return
    if manifest is None:
        if ws is None or ws.source("manifest") is None:
            raise TaommError("no manifest: pass MANIFEST, or run inside a workspace with sources.manifest (taomm init)")
        manifest = ws.source("manifest")
    if out is None:
        raise TaommError("no --out and no workspace: pass --out STORE")
    if detector is None:
        if ws is None:
            raise TaommError("no --detector and no workspace: pass --detector DIR (train one with taomm train-detector)")
        detector = ws.path("runs") / DETECTOR_DIR
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = ProductDetector.load(detector)
    with open(manifest, encoding="utf-8", errors="replace") as f:
        total_lines = sum(1 for line in f if line.strip())
    with progress_bar("preparing items", total_lines) as advance:
        report = prepare_store(manifest, out, detector_extractor(model, max_regions, device=device, bf16=bf16),
                               feature_dim=model.config.representation_size,
                               taxonomy=DEFAULT_TAXONOMY[lang], classes=model.config.classes,
                               language=lang, workers=workers, shard=(index, total), on_progress=advance)
    _print_report(report, out, json_out)


def _import_features(features: Path, captions: Path | None, out: Path | None, lang: str, feature_dim: int,
                     max_regions: int, shard: tuple[int, int], json_out: bool) -> None:
    from taomm.datasets.prepare import prepare_from_features
    from taomm.taxonomy import DEFAULT_TAXONOMY, load_taxonomy

    if out is None:
        raise TaommError("no --out and no workspace: pass --out STORE")
    taxonomy = load_taxonomy(DEFAULT_TAXONOMY[lang])
    with progress_bar("importing features", None) as advance:
        report = prepare_from_features(features, out, feature_dim, taxonomy.name, list(taxonomy.classes),
                                       language=lang, captions=captions, max_regions=max_regions, shard=shard,
                                       on_progress=advance)
    _print_report(report, out, json_out)


def _print_report(report, out: Path, json_out: bool) -> None:
    summary = {"store": str(Path(out).resolve()), **report.__dict__}
    if json_out:
        print_json(summary)
        return
    reasons = ", ".join(f"{k} {v}" for k, v in report.reasons.items()) or "none"
    stderr_console().print(f"{report.inputs} inputs: {report.ok} in the store ({report.written} new), "
                           f"{report.quarantined} quarantined ({reasons}); see {out}/report.json")


def register(app: typer.Typer) -> None:
    app.command("prepare", epilog="Examples:  taomm prepare   |   taomm prepare items.jsonl --out store "
                "--detector detector --shard 0/4   |   taomm prepare --features kdd.tsv --out store")(prepare_command)
