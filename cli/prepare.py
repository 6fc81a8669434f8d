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


FORMATS = ("manifest", "coco", "karpathy", "cc", "img2dataset", "sbu", "vcr")
# Regions per image by language: the paper's at most 16 for zh; bottom-up attention's 10-100 for en.
REGIONS = {"zh": (1, 16), "en": (10, 100)}


def prepare_command(
    source: Annotated[Path | None, typer.Argument(metavar="[SOURCE]", help="Items: a manifest (JSONL or CSV with item_id, "
                                                  "title, image relative to it, split; default: the workspace's), or a "
                                                  "dataset file in --format.", show_default=False)] = None,
    fmt: Annotated[str, typer.Option("--format", help=f"SOURCE's format: {', '.join(FORMATS)} (see the README's "
                                     "English path for each dataset's layout).")] = "manifest",
    images: Annotated[Path | None, typer.Option("--images", help="Image root of a dataset (default: its usual "
                                                "place beside SOURCE).", file_okay=False)] = None,
    split: Annotated[str | None, typer.Option("--split", help="train, val or test for a dataset file that does not "
                                              "say (COCO, CC, SBU).")] = None,
    karpathy: Annotated[Path | None, typer.Option("--karpathy", help="With --format coco: Karpathy's "
                                                  "dataset_coco.json for the splits.", dir_okay=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Store folder. Default: the workspace's store.",
                                             file_okay=False)] = None,
    detector: Annotated[Path | None, typer.Option("--detector", help="Detector folder. Default: the workspace's "
                                                  "runs/detector.", file_okay=False)] = None,
    lang: Annotated[str | None, typer.Option("--lang", help="zh or en. Default: the workspace's, else zh.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Image-decoding processes.")] = 2,
    max_regions: Annotated[int | None, typer.Option("--max-regions", min=1, help="Regions per image at most. "
                                                    "Default: 16 (zh), 100 (en).", show_default=False)] = None,
    min_regions: Annotated[int | None, typer.Option("--min-regions", min=1, help="Regions per image at least, "
                                                    "the best-scoring ones below the confidence threshold filling "
                                                    "up. Default: 1 (zh), 10 (en).", show_default=False)] = None,
    shard: Annotated[str, typer.Option("--shard", help="I/N: prepare only the I-th of N disjoint parts, into "
                                       "STORE/shard-I-of-N (the folder then reads as one store).")] = "0/1",
    device: Annotated[str, typer.Option("--device", help="cpu or cuda. Default: cuda when available.")] = "",
    bf16: Annotated[bool, typer.Option("--bf16/--fp32", help="Detect under bf16 autocast where the hardware has bf16 "
                                       "(about 1.3x faster there; elsewhere fp32 is used), as the demo does.")] = True,
    features: Annotated[Path | None, typer.Option("--features", help="Import pre-extracted region features "
                                                  "(bottom-up-attention or KDD Cup 2020 TSV) instead of detecting.",
                                                  dir_okay=False)] = None,
    captions: Annotated[Path | None, typer.Option("--captions", help="With --features in bottom-up format: JSONL of "
                                                  "item_id (= image id), title, split (or give SOURCE and --format).",
                                                  dir_okay=False)] = None,
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
    min_regions = min_regions or REGIONS[lang][0]
    max_regions = max_regions or REGIONS[lang][1]
    index, total = _shard(shard)
    if out is None and ws is not None:
        out = ws.path("store")
    if out is None:
        raise TaommError("no --out and no workspace: pass --out STORE")
    if total > 1:
        from taomm.datasets.sharded import shard_folder

        out = shard_folder(out, index, total)  # read back as one store: taomm inspect STORE
    if features is not None:
        _import_features(features, captions, source, fmt, images, split, karpathy, out, lang, feature_dim,
                         max_regions, (index, total), json_out)
        return
    if source is None:
        if ws is None or ws.source("manifest") is None:
            raise TaommError("no manifest: pass SOURCE, or run inside a workspace with sources.manifest (taomm init)")
        source = ws.source("manifest")
    if detector is None:
        if ws is None:
            raise TaommError("no --detector and no workspace: pass --detector DIR (train one with taomm train-detector)")
        detector = ws.path("runs") / DETECTOR_DIR
    _detect(source, fmt, images, split, karpathy, out, detector, lang, workers, (min_regions, max_regions),
            (index, total), device, bf16, json_out)


def _detect(source: Path, fmt: str, images: Path | None, split: str | None, karpathy: Path | None, out: Path,
            detector: Path, lang: str, workers: int, regions: tuple[int, int], shard: tuple[int, int], device: str,
            bf16: bool, json_out: bool) -> None:
    import torch

    from taomm.datasets.prepare import detector_extractor, prepare_store
    from taomm.detectors.detector import ProductDetector
    from taomm.taxonomy import DEFAULT_TAXONOMY

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = ProductDetector.load(detector)
    extract = detector_extractor(model, regions[1], device=device, bf16=bf16, min_regions=regions[0])
    common = {"feature_dim": model.config.representation_size, "taxonomy": DEFAULT_TAXONOMY[lang],
              "classes": model.config.classes, "language": lang}
    if fmt == "vcr":  # regions: the annotated boxes the question tags point at, features at them
        from taomm.datasets.vcr import box_feature_extractor, prepare_vcr

        if not source.is_dir():
            raise TaommError(f"--format vcr: SOURCE must be the VCR folder (train.jsonl, vcr1images/), not {source}")
        with progress_bar("preparing VCR images", None) as advance:
            report = prepare_vcr(source, out, box_feature_extractor(model, device=device, bf16=bf16),
                                 splits=[split] if split else None, feature_dim=model.config.representation_size,
                                 max_regions=regions[1], workers=workers, on_progress=advance)
        _print_report(report, out, json_out)
        return
    if fmt == "manifest":
        entries, count = source, _count_lines(source)
    else:
        from taomm.datasets.captions import read_caption_manifest

        entries, count = read_caption_manifest(fmt, source, images=images, split=split, karpathy=karpathy), None
    with progress_bar("preparing items", count) as advance:
        report = prepare_store(entries, out, extract, **common, workers=workers, shard=shard, on_progress=advance)
    _print_report(report, out, json_out)


def _count_lines(path: Path) -> int:
    with open(path, encoding="utf-8", errors="replace") as f:
        return sum(1 for line in f if line.strip())


def _import_features(features: Path, captions: Path | None, source: Path | None, fmt: str, images: Path | None,
                     split: str | None, karpathy: Path | None, out: Path, lang: str, feature_dim: int,
                     max_regions: int, shard: tuple[int, int], json_out: bool) -> None:
    from taomm.datasets.prepare import prepare_from_features
    from taomm.taxonomy import DEFAULT_TAXONOMY, load_taxonomy

    rejected: list = []
    if source is not None and fmt not in ("manifest", "vcr"):
        from taomm.datasets.captions import captions_by_image, read_captions

        if captions is not None:
            raise TaommError("give either --captions or SOURCE with --format, not both")
        records = read_captions(fmt, source, images=images, split=split, karpathy=karpathy)
        captions = captions_by_image(records, on_reject=rejected.append)
    elif source is not None:
        raise TaommError(f"--features takes its captions from --captions JSONL or a caption dataset (--format "
                         f"coco, karpathy, cc, img2dataset, sbu), not --format {fmt}")
    taxonomy = load_taxonomy(DEFAULT_TAXONOMY[lang])
    with progress_bar("importing features", None) as advance:
        report = prepare_from_features(features, out, feature_dim, taxonomy.name, list(taxonomy.classes),
                                       language=lang, captions=captions, rejected=rejected, max_regions=max_regions,
                                       shard=shard, on_progress=advance)
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
                "--detector detector --shard 0/4   |   taomm prepare --features kdd.tsv --out store   |   "
                "taomm prepare --lang en --format karpathy flickr30k/dataset_flickr30k.json --features "
                "flickr30k_butd.tsv --out f30k")(prepare_command)
