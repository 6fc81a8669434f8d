"""Detector -> feature store: the extractors ``taomm prepare`` runs, and :func:`prepare`, its
one entry point (the CLI's and the demo's).

The loops of :mod:`taomm.datasets.prepare` and :mod:`taomm.datasets.vcr_prepare` write a
store from any extractor function; the functions here make those from a
:class:`~taomm.detectors.detector.ProductDetector` (its regions, or its features at given
boxes) or from a foreign feature file (:mod:`taomm.detectors.foreign`). :func:`prepare`
picks the loop by the source's format, with the regions per image of the language
(:data:`taomm.model.config.LANGUAGE_DEFAULTS`, :data:`taomm.model.config.MIN_REGIONS`)
unless told otherwise. Under torchrun, :func:`prepare_ranks` runs it once per rank, each on
its shard, and writes the joint report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taomm.datasets.captions import FORMATS as CAPTION_FORMATS
from taomm.datasets.captions import captions_by_image, read_caption_manifest, read_captions
from taomm.datasets.manifest import Rejected
from taomm.datasets.prepare import (
    Captions,
    PrepareReport,
    handled_ids,
    import_regions,
    prepare_store,
)
from taomm.datasets.sharded import id_share, joint_report, shard_folder
from taomm.datasets.store import is_store
from taomm.datasets.vcr_prepare import BoxFeatures, prepare_vcr
from taomm.detectors.detector import ProductDetector
from taomm.detectors.foreign import ForeignFormatError, ForeignRecord, read_features
from taomm.device import autocast, resolve_device
from taomm.errors import OptionError, StoreError, TaommError
from taomm.model.config import LANGUAGE_DEFAULTS, MIN_REGIONS
from taomm.taxonomy import DEFAULT_TAXONOMY, load_taxonomy
from taomm.train.distributed import DistInfo, all_gather_json, on_every_rank

# progress(label, total) -> a context manager yielding advance(n): the CLI passes rich bars
Progress = Callable[[str, int | None], AbstractContextManager[Callable[[int], None]]]


# --- extractors ----------------------------------------------------------------------------

def detector_extractor(detector: ProductDetector, max_regions: int | None = None, min_score: float | None = None,
                       device: str = "cpu", bf16: bool = False,
                       min_regions: int = 1) -> Callable[[torch.Tensor], dict[str, np.ndarray]]:
    """``extract`` for :func:`~taomm.datasets.prepare.prepare_store` from a detector;
    ``max_regions`` and ``min_score`` default to the detector's own (16 regions above 0.1)."""
    detector = detector.to(device).eval()
    limits = {k: v for k, v in (("max_regions", max_regions), ("min_score", min_score)) if v is not None}

    def extract(image: torch.Tensor) -> dict[str, np.ndarray]:
        with autocast(device, bf16):
            (regions,) = detector.extract([image.to(device).float().div(255)], **limits, min_regions=min_regions)
        return {"boxes": regions["boxes"].float().cpu().numpy(), "features": regions["features"].float().cpu().numpy(),
                "labels": regions["labels"].cpu().numpy(), "scores": regions["scores"].float().cpu().numpy()}

    return extract


def box_feature_extractor(detector: ProductDetector, device: str = "cpu", bf16: bool = False) -> BoxFeatures:
    """Features at given boxes (:func:`~taomm.datasets.vcr_prepare.prepare_vcr`) from a detector."""
    detector = detector.to(device).eval()

    def extract(image: torch.Tensor, boxes: np.ndarray) -> np.ndarray:
        with autocast(device, bf16):
            (features,) = detector.features_at([image.to(device).float().div(255)],
                                               [torch.as_tensor(boxes, dtype=torch.float32, device=device)])
        return features.float().cpu().numpy()

    return extract


def feature_rows(path: str | os.PathLike[str], feature_dim: int) -> Iterator[ForeignRecord | Rejected]:
    """The rows of a foreign feature file for :func:`~taomm.datasets.prepare.import_regions`,
    a bad row as a ``bad_feature_row`` :class:`Rejected`; the file is opened when first read."""
    for row in read_features(path, feature_dim):
        yield Rejected(row.line, None, "bad_feature_row", row.reason) if isinstance(row, ForeignFormatError) else row


# --- the entry point -----------------------------------------------------------------------

@dataclass(frozen=True)
class PrepareSource:
    """What ``taomm prepare`` reads: items to detect, or pre-extracted ``features``."""

    path: Path | None = None  # a manifest, a dataset file in `format`, or the VCR folder
    format: str = "manifest"  # manifest, a caption format (taomm.datasets.captions.FORMATS) or vcr
    images: Path | None = None  # a dataset's image root; default: its usual place beside `path`
    split: str | None = None  # the split of a dataset file that does not say; for VCR, the one split
    karpathy: Path | None = None  # with coco: Karpathy's dataset_coco.json for the splits
    features: Path | None = None  # pre-extracted region features (TSV) instead of detecting
    captions: Path | None = None  # with bottom-up features: JSONL of item_id (= image id), title, split
    feature_dim: int = 2048  # the region feature size of `features`


def language_regions(language: str, min_regions: int | None = None,
                     max_regions: int | None = None) -> tuple[int, int]:
    """Regions per image at least and at most: those given, else the language's (1 to 16 for
    zh, the paper's at most 16; 10 to 100 for en, bottom-up attention's)."""
    return min_regions or MIN_REGIONS[language], max_regions or LANGUAGE_DEFAULTS[language]["max_regions"]


def prepare(source: PrepareSource, store: str | os.PathLike[str], language: str = "zh",
            detector: str | os.PathLike[str] | ProductDetector | None = None,
            regions: tuple[int | None, int | None] = (None, None), workers: int = 2, shard: tuple[int, int] = (0, 1),
            device: str = "", bf16: bool = True, progress: Progress | None = None) -> PrepareReport:
    """Prepare ``source`` into ``store`` (``taomm prepare``; the demo's prepare stage).

    ``source.features`` are imported as they are; otherwise ``detector`` (a folder or a loaded
    detector) extracts the regions of the manifest's or the dataset's images, or for the VCR
    folder the features at its annotated boxes. ``regions``: at least and at most per image
    (:func:`language_regions`). ``device`` defaults to cuda when available. ``progress(label,
    total)`` shows the run; every input ends in the store or in its quarantine."""
    min_regions, max_regions = language_regions(language, *regions)
    progress = progress or _no_progress
    if source.features is not None:
        return _import(source, store, language, max_regions, shard, progress)
    if source.path is None or detector is None:
        raise TaommError("prepare needs a source and a detector, or pre-extracted features")
    device = resolve_device(device)
    model = detector if isinstance(detector, ProductDetector) else ProductDetector.load(detector)
    if source.format == "vcr":
        return _detect_vcr(source, store, model, max_regions, workers, device, bf16, progress)
    extract = detector_extractor(model, max_regions, device=device, bf16=bf16, min_regions=min_regions)
    if source.format == "manifest":
        entries, count = source.path, _count_lines(source.path)
    else:
        entries, count = read_caption_manifest(source.format, source.path, images=source.images, split=source.split,
                                               karpathy=source.karpathy), None
    with progress("preparing items", count) as advance:
        return prepare_store(entries, store, extract, feature_dim=model.config.representation_size,
                             taxonomy=DEFAULT_TAXONOMY[language], classes=model.config.classes, language=language,
                             workers=workers, shard=shard, on_progress=advance)


# A rank done with its shard waits in the gather for the slowest one: a resumed shard can end
# hours before a fresh one, far past torch's default timeout of minutes.
RANK_TIMEOUT = timedelta(days=7)


def prepare_ranks(source: PrepareSource, store: str | os.PathLike[str], info: DistInfo,
                  progress: Progress | None = None, **options: Any) -> PrepareReport:
    """:func:`prepare` in each process of a torchrun group (``info``; one process: ``prepare``
    itself). Rank R of N prepares shard R/N into ``STORE/shard-R-of-N`` on ``info.device``, the
    folder reading as one store (:func:`~taomm.datasets.sharded.open_store`); rank 0 writes
    ``STORE/report.json`` (:func:`~taomm.datasets.sharded.joint_report`). Returns the totals on
    every rank. A rank that fails fails every rank once all are done
    (:class:`~taomm.train.distributed.RanksFailedError`); a rerun resumes each shard. ``options``:
    :func:`prepare`'s."""
    if not info.distributed:
        return prepare(source, store, progress=progress, **options)
    if tuple(options.pop("shard", (0, 1))) != (0, 1):
        raise OptionError("{shard} is torchrun's to choose: each rank prepares shard RANK/WORLD_SIZE", "shard")
    if source.format == "vcr" and source.features is None:
        raise OptionError("{format=vcr} is prepared by one process, not under torchrun", "format=vcr")
    shard = (info.rank, info.world_size)
    folder = shard_folder(store, *shard)
    options["device"] = str(info.device)
    def prepare_shard() -> dict[str, Any]:
        if is_store(store):  # it would read as that store, not as the shards
            raise StoreError(f"{Path(store).resolve()} holds a store of one process: prepare the ranks' shards into "
                             "another folder")
        report = prepare(source, folder, shard=shard, progress=progress if info.is_main else None, **options)
        return {"rank": info.rank, **asdict(report), "ids": id_share(handled_ids(folder))}

    share = on_every_rank(prepare_shard, info)
    joint = joint_report(all_gather_json(share, info))
    if info.is_main:
        tmp = Path(store) / "report.json.tmp"
        tmp.write_text(json.dumps(joint, ensure_ascii=False, indent=2, sort_keys=True) + "\n", "utf-8")
        os.replace(tmp, Path(store) / "report.json")
    return PrepareReport(**{name: joint[name] for name in PrepareReport.__dataclass_fields__})


def _detect_vcr(source: PrepareSource, store: str | os.PathLike[str], model: ProductDetector, max_regions: int,
                workers: int, device: str, bf16: bool, progress: Progress) -> PrepareReport:
    """VCR: the regions are the annotated boxes the question tags point at, features at them."""
    if not source.path.is_dir():
        raise OptionError(f"{{format=vcr}}: the source must be the VCR folder (train.jsonl, vcr1images/), not "
                          f"{source.path}", "format=vcr")
    with progress("preparing VCR images", None) as advance:
        return prepare_vcr(source.path, store, box_feature_extractor(model, device=device, bf16=bf16),
                           splits=[source.split] if source.split else None,
                           feature_dim=model.config.representation_size, max_regions=max_regions, workers=workers,
                           on_progress=advance)


def _import(source: PrepareSource, store: str | os.PathLike[str], language: str, max_regions: int,
            shard: tuple[int, int], progress: Progress) -> PrepareReport:
    """Pre-extracted features, captioned by ``source.captions`` or by a caption dataset."""
    captions: Path | Captions | None = source.captions
    rejected: list[Rejected] = []
    if source.path is not None and source.format not in ("manifest", "vcr"):
        if captions is not None:
            raise OptionError("give either {captions} or a caption dataset ({format}), not both", "captions", "format")
        records = read_captions(source.format, source.path, images=source.images, split=source.split,
                                karpathy=source.karpathy)
        captions = captions_by_image(records, on_reject=rejected.append)
    elif source.path is not None:
        raise OptionError(f"{{features}} takes its captions from {{captions}} JSONL or a caption dataset ({{format}} "
                          f"{', '.join(CAPTION_FORMATS)}), not {{format}} {source.format}", "features", "captions",
                          "format")
    taxonomy = load_taxonomy(DEFAULT_TAXONOMY[language])
    with progress("importing features", None) as advance:
        return import_regions(feature_rows(source.features, source.feature_dim), store, source.feature_dim,
                              taxonomy.name, list(taxonomy.classes), language=language, captions=captions,
                              rejected=rejected, max_regions=max_regions, shard=shard, on_progress=advance)


def _count_lines(path: Path) -> int:
    with open(path, encoding="utf-8", errors="replace") as f:
        return sum(1 for line in f if line.strip())


def _no_progress(label: str, total: int | None) -> AbstractContextManager[Callable[[int], None]]:
    return nullcontext(lambda count: None)
