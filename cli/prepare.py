"""``taomm prepare``: raw items (manifest + images) -> the feature store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taomm.cli.common import (
    JsonOpt,
    WorkspaceOpt,
    print_json,
    progress_bar,
    stderr_console,
    training_processes,
)
from taomm.errors import TaommError
from taomm.model.config import LANGUAGE_DEFAULTS
from taomm.model.config import MIN_REGIONS as LANGUAGE_MIN_REGIONS
from taomm.workspace import DETECTOR_DIR, find_workspace


def _shard(text: str) -> tuple[int, int]:
    try:
        index, total = (int(x) for x in text.split("/"))
    except ValueError:
        raise TaommError(f"--shard must look like I/N (e.g. 0/4), not {text!r}") from None
    return index, total


FORMATS = ("manifest", "coco", "karpathy", "cc", "img2dataset", "sbu", "vcr")
# Regions per image by language, as the help shows them: "16 (zh), 100 (en)" (their owner is the model config).
MAX_REGIONS = ", ".join(f"{d['max_regions']} ({lang})" for lang, d in LANGUAGE_DEFAULTS.items())
MIN_REGIONS = ", ".join(f"{n} ({lang})" for lang, n in LANGUAGE_MIN_REGIONS.items())


SourceArg = Annotated[Path | None, typer.Argument(
    metavar="[SOURCE]", help="Items: a manifest (JSONL or CSV with item_id, title, image relative to it, split; "
    "default: the workspace's), or a dataset file in --format.", show_default=False)]
FormatOpt = Annotated[str, typer.Option("--format", help=f"SOURCE's format: {', '.join(FORMATS)} (see the README's "
                                        "English path for each dataset's layout).")]
ImagesOpt = Annotated[Path | None, typer.Option("--images", help="Image root of a dataset (default: its usual place "
                                                "beside SOURCE).", file_okay=False)]
SplitOpt = Annotated[str | None, typer.Option("--split", help="train, val or test for a dataset file that does not "
                                              "say (COCO, CC, SBU).")]
KarpathyOpt = Annotated[Path | None, typer.Option("--karpathy", help="With --format coco: Karpathy's "
                                                  "dataset_coco.json for the splits.", dir_okay=False)]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Store folder. Default: the workspace's store.",
                                             file_okay=False)]
DetectorOpt = Annotated[Path | None, typer.Option("--detector", help="Detector folder. Default: the workspace's "
                                                  "runs/detector.", file_okay=False)]
MaxRegionsOpt = Annotated[int | None, typer.Option("--max-regions", min=1, help="Regions per image at most. "
                                                   f"Default: {MAX_REGIONS}.", show_default=False)]
MinRegionsOpt = Annotated[int | None, typer.Option(
    "--min-regions", min=1, help="Regions per image at least, the best-scoring ones below the confidence threshold "
    f"filling up. Default: {MIN_REGIONS}.", show_default=False)]
ShardOpt = Annotated[str, typer.Option("--shard", help="I/N: prepare only the I-th of N disjoint parts, into "
                                       "STORE/shard-I-of-N (the folder then reads as one store).")]
Bf16Opt = Annotated[bool, typer.Option("--bf16/--fp32", help="Detect under bf16 autocast where the hardware has bf16 "
                                       "(about 1.3x faster there; elsewhere fp32 is used), as the demo does.")]
FeaturesOpt = Annotated[Path | None, typer.Option("--features", help="Import pre-extracted region features "
                                                  "(bottom-up-attention or KDD Cup 2020 TSV) instead of detecting.",
                                                  dir_okay=False)]
CaptionsOpt = Annotated[Path | None, typer.Option("--captions", help="With --features in bottom-up format: JSONL of "
                                                  "item_id (= image id), title, split (or give SOURCE and --format).",
                                                  dir_okay=False)]


def prepare_command(
    source: SourceArg = None,
    fmt: FormatOpt = "manifest",
    images: ImagesOpt = None,
    split: SplitOpt = None,
    karpathy: KarpathyOpt = None,
    out: OutOpt = None,
    detector: DetectorOpt = None,
    lang: Annotated[str | None, typer.Option("--lang", help="zh or en. Default: the workspace's, else zh.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Image-decoding processes.")] = 2,
    max_regions: MaxRegionsOpt = None,
    min_regions: MinRegionsOpt = None,
    shard: ShardOpt = "0/1",
    device: Annotated[str, typer.Option("--device", help="cpu or cuda. Default: cuda when available.")] = "",
    bf16: Bf16Opt = True,
    features: FeaturesOpt = None,
    captions: CaptionsOpt = None,
    feature_dim: Annotated[int, typer.Option("--feature-dim", min=1, help="With --features: region feature size.")] = 2048,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Clean titles, decode images, detect regions and write the feature store.

    Bad inputs never stop the run: each one is a line of STORE/quarantine.jsonl with a reason
    code; STORE/report.json has the counts. Killed and rerun, it resumes where it stopped.
    The English path (--lang en) reads COCO, Flickr30K (Karpathy), Conceptual Captions, SBU
    and VCR as distributed (--format), with images or bottom-up-attention TSV features.
    """
    from taomm.taxonomy import DEFAULT_TAXONOMY

    ws = find_workspace(workspace)
    lang = lang or (ws.config.language if ws else "zh")
    if lang not in DEFAULT_TAXONOMY:
        raise TaommError(f"no region taxonomy for language {lang!r}")
    if fmt not in FORMATS:
        raise TaommError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt != "manifest" and source is None:
        raise TaommError(f"--format {fmt} needs SOURCE: the dataset's file (or folder for vcr, img2dataset)")
    index, total = _shard(shard)
    if out is None and ws is not None:
        out = ws.path("store")
    if out is None:
        raise TaommError("no --out and no workspace: pass --out STORE")
    if features is None:
        source, detector = _workspace_inputs(ws, source, detector)
    from taomm.detectors.extract import RANK_TIMEOUT, PrepareSource, prepare_ranks

    with training_processes(device, RANK_TIMEOUT) as info:  # under torchrun, rank R prepares STORE/shard-R-of-N
        if total > 1 and not info.distributed:
            from taomm.datasets.sharded import shard_folder

            out = shard_folder(out, index, total)  # read back as one store: taomm inspect STORE
        report = prepare_ranks(PrepareSource(source, fmt, images, split, karpathy, features, captions, feature_dim),
                               out, info, language=lang, detector=detector, regions=(min_regions, max_regions),
                               workers=workers, shard=(index, total), device=device, bf16=bf16,
                               progress=progress_bar)
        if info.is_main:
            _print_report(report, out, json_out)


def _workspace_inputs(ws, source: Path | None, detector: Path | None) -> tuple[Path, Path]:
    """SOURCE and --detector, by default the workspace's manifest and detector."""
    if source is None:
        if ws is None or ws.source("manifest") is None:
            raise TaommError("no manifest: pass SOURCE, or run inside a workspace with sources.manifest (taomm init)")
        source = ws.source("manifest")
    if detector is None:
        if ws is None:
            raise TaommError("no --detector and no workspace: pass --detector DIR (train one with taomm train-detector)")
        detector = ws.path("runs") / DETECTOR_DIR
    return source, detector


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
                "--detector detector --shard 0/4   |   taomm prepare --features kdd.tsv --out store   |   "
                "taomm prepare --lang en --format karpathy flickr30k/dataset_flickr30k.json --features "
                "flickr30k_butd.tsv --out f30k")(prepare_command)
