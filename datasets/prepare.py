"""`taomm prepare`: a manifest of raw items -> the feature store, resumable, never fatal.

Per item: the manifest line is checked (:mod:`taomm.datasets.manifest`), the title goes
through the text pipeline (:mod:`taomm.text.clean`), the image is decoded safely
(:mod:`taomm.datasets.images`, in DataLoader workers) and the detector extracts its
regions. Every input ends either in the store or as one line of ``STORE/quarantine.jsonl``
with a reason code: ``ok + quarantined == inputs``. ``STORE/report.json`` holds the
counts and the time per stage.

Resumable: items are written in manifest order and the store skips ids it holds, so a run
killed at any point and rerun ends with the same store as an uninterrupted one. Each image
is extracted alone (no padding shared with other images), so its features do not depend on
where a batch starts. The quarantine and report are rewritten whole at the end of a run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from taomm.datasets.images import ImageError, load_image
from taomm.datasets.manifest import ManifestEntry, Rejected, iter_json_objects, read_manifest
from taomm.datasets.store import Item, StoreLock, StoreWriter, is_store
from taomm.device import autocast
from taomm.errors import TaommError
from taomm.text.clean import make_cleaner

SPLITS = ("train", "val", "test")


@dataclass
class PrepareReport:
    inputs: int = 0
    ok: int = 0  # in the store (written now or by an earlier run)
    quarantined: int = 0
    written: int = 0  # added by this run
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # per stage
    shard: str = "0/1"

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2, sort_keys=True)


class _Quarantine:
    """The rejected inputs of a run, written whole to STORE/quarantine.jsonl at its end."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.reasons: Counter[str] = Counter()

    def __call__(self, line: int, item_id: str | None, reason: str, detail: str) -> None:
        self.rows.append({"line": line, "item_id": item_id, "reason": reason, "detail": detail})
        self.reasons[reason] += 1

    def finish(self, store: Path, report: PrepareReport, kept: int) -> PrepareReport:
        report.ok, report.quarantined = kept, len(self.rows)
        report.reasons = dict(sorted(self.reasons.items()))
        rows = sorted(self.rows, key=lambda q: q["line"])
        _write_atomic(store / "quarantine.jsonl", "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in rows))
        _write_atomic(store / "report.json", report.to_json() + "\n")
        return report


def in_shard(item_id: str, shard: int, shards: int) -> bool:
    """Stable assignment of an item to one of ``shards`` (the same on every machine)."""
    if shards == 1:
        return True
    digest = hashlib.blake2b(item_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % shards == shard


@dataclass
class _Pending:
    entry: ManifestEntry
    title: str
    words: tuple[str, ...]


class _Images(Dataset):
    """Decodes the images of the items that passed the text pipeline (in worker processes)."""

    def __init__(self, pending: list[_Pending]) -> None:
        self.paths = [p.entry.image for p in pending]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            array = np.asarray(load_image(self.paths[index]), dtype=np.uint8)
        except ImageError as exc:
            return index, None, exc.reason, exc.detail
        return index, torch.from_numpy(array.copy()).permute(2, 0, 1), None, None


def _as_is(sample):
    return sample  # no collation: one image at a time (see the module docstring)


def prepare_store(
    manifest: str | os.PathLike[str] | Iterable[ManifestEntry | Rejected],
    store: str | os.PathLike[str],
    extract: Callable[[torch.Tensor], dict[str, np.ndarray]],
    feature_dim: int,
    taxonomy: str,
    classes: list[str],
    language: str = "zh",
    workers: int = 2,
    shard: tuple[int, int] = (0, 1),
    batch_size: int = 256,
    on_progress: Callable[[int], None] | None = None,
) -> PrepareReport:
    """Prepare ``manifest`` into ``store``. ``extract(image)`` maps a (3, H, W) uint8 image to
    its regions: boxes (N, 4) pixels, features (N, D), labels (N,), scores (N,).

    ``manifest`` is a manifest file or the entries of a dataset adapter
    (:mod:`taomm.datasets.captions`); consecutive entries with the same image (the captions
    of one photo) share one detection."""
    index, total = shard
    if not 0 <= index < total:
        raise TaommError(f"--shard must be I/N with 0 <= I < N, got {index}/{total}")
    store = Path(store)
    with StoreLock(store) as lock:  # a second writer is refused now, before any work
        report = PrepareReport(shard=f"{index}/{total}")
        reject = _Quarantine()
        cleaner = make_cleaner(language)
        start = time.perf_counter()
        entries = read_manifest(Path(manifest)) if isinstance(manifest, str | os.PathLike) else manifest

        # 1. manifest and titles (cheap, in order); items already stored are only counted
        pending: list[_Pending] = []
        kept_ids: list[tuple[str, str | None]] = []
        done = _stored_ids(store)
        for entry in entries:
            if isinstance(entry, Rejected):
                # A line without a readable id belongs to shard 0, so it is counted once.
                if in_shard(entry.item_id, index, total) if entry.item_id else index == 0:
                    report.inputs += 1
                    reject(entry.line, entry.item_id, entry.reason, entry.detail)
                continue
            if not in_shard(entry.item_id, index, total):
                continue
            report.inputs += 1
            if entry.item_id in done:
                kept_ids.append((entry.item_id, entry.split))
                continue
            cleaned = cleaner(entry.title)
            if not cleaned.kept:
                reject(entry.line, entry.item_id, cleaned.reason or "empty", cleaned.title[:80])
                continue
            pending.append(_Pending(entry, cleaned.title, cleaned.words))
        report.seconds["manifest_and_text"] = round(time.perf_counter() - start, 3)
        if on_progress is not None:
            on_progress(report.inputs - len(pending))

        # 2. images and regions, written in manifest order
        start = time.perf_counter()
        loader = DataLoader(_Images(pending), batch_size=None, num_workers=workers, collate_fn=_as_is)
        with StoreWriter(store, language=language, feature_dim=feature_dim, taxonomy=taxonomy, classes=classes,
                         batch_size=batch_size, lock=lock) as writer:
            last: tuple[Path | None, dict[str, np.ndarray] | None] = (None, None)
            for i, image, reason, detail in loader:
                item = pending[i]
                if image is None:
                    reject(item.entry.line, item.entry.item_id, reason, detail)
                else:
                    regions = last[1] if last[0] == item.entry.image else extract(image)
                    last = (item.entry.image, regions)
                    writer.add(Item(item.entry.item_id, item.title, _word_ends(item.words), int(image.shape[2]),
                                    int(image.shape[1]), regions["boxes"], regions["features"], regions["labels"],
                                    regions["scores"]))
                    kept_ids.append((item.entry.item_id, item.entry.split))
                if on_progress is not None:
                    on_progress(1)
            writer.flush()
            report.written = writer.added
            report.seconds["images_and_regions"] = round(time.perf_counter() - start, 3)
            for split in SPLITS:
                ids = [item_id for item_id, s in kept_ids if s == split]
                if ids:
                    writer.set_split(split, ids)
        return reject.finish(store, report, len(kept_ids))


def _word_ends(words: tuple[str, ...]) -> np.ndarray:
    return np.cumsum([len(w) for w in words], dtype=np.int64).astype(np.int32)


def _stored_ids(store: Path) -> set[str]:
    if not is_store(store):
        return set()
    from taomm.datasets.store import FeatureStore

    with FeatureStore(store) as fs:
        return set(fs.item_ids())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def detector_extractor(detector, max_regions: int | None = None, min_score: float | None = None, device: str = "cpu",
                       bf16: bool = False, min_regions: int = 1) -> Callable[[torch.Tensor], dict[str, np.ndarray]]:
    """``extract`` for :func:`prepare_store` from a :class:`~taomm.detectors.detector.ProductDetector`;
    ``max_regions`` and ``min_score`` default to the detector's own (16 regions above 0.1)."""
    detector = detector.to(device).eval()
    limits = {k: v for k, v in (("max_regions", max_regions), ("min_score", min_score)) if v is not None}

    def extract(image: torch.Tensor) -> dict[str, np.ndarray]:
        with autocast(device, bf16):
            (regions,) = detector.extract([image.to(device).float().div(255)], **limits, min_regions=min_regions)
        return {"boxes": regions["boxes"].float().cpu().numpy(), "features": regions["features"].float().cpu().numpy(),
                "labels": regions["labels"].cpu().numpy(), "scores": regions["scores"].float().cpu().numpy()}

    return extract


# image id -> the captions of that image: (item id, caption, split)
Captions = dict[str, list[tuple[str, str, str | None]]]


def prepare_from_features(
    features: str | os.PathLike[str],
    store: str | os.PathLike[str],
    feature_dim: int,
    taxonomy: str,
    classes: list[str],
    language: str = "zh",
    captions: str | os.PathLike[str] | Captions | None = None,
    rejected: Iterable[Rejected] = (),
    max_regions: int = 16,
    shard: tuple[int, int] = (0, 1),
    batch_size: int = 256,
    on_progress: Callable[[int], None] | None = None,
) -> PrepareReport:
    """Import pre-extracted region features (bottom-up-attention or KDD Cup 2020 TSV,
    :mod:`taomm.detectors.foreign`) instead of running the detector.

    A KDD row carries its caption (item id ``product_id:query_id``); bottom-up rows take
    theirs from ``captions``: a JSONL file (``item_id`` = the image id, ``title``, optional
    ``split``) or, from a dataset adapter, every caption of each image (one item per
    caption, sharing the row's regions; ``rejected``: the adapter's unusable captions, for
    the quarantine). Rows keep their ``max_regions`` best-scoring
    regions; bad rows, titles and duplicates are quarantined as in :func:`prepare_store`."""
    from taomm.detectors.foreign import ForeignFormatError, read_features

    index, total = shard
    store = Path(store)
    with StoreLock(store) as lock:  # a second writer is refused now, before any work
        report = PrepareReport(shard=f"{index}/{total}")
        reject = _Quarantine()
        if captions is None or isinstance(captions, dict):
            titles = captions or {}
        else:
            titles = _read_captions(Path(captions))
        cleaner = make_cleaner(language)
        done, seen, kept_ids = _stored_ids(store), set(), []
        start = time.perf_counter()
        for bad in rejected:
            if in_shard(bad.item_id, index, total) if bad.item_id else index == 0:
                report.inputs += 1
                reject(bad.line, bad.item_id, bad.reason, bad.detail)

        with StoreWriter(store, language=language, feature_dim=feature_dim, taxonomy=taxonomy, classes=classes,
                         batch_size=batch_size, lock=lock) as writer:
            for line, record in enumerate(read_features(features, feature_dim), 1):
                if on_progress is not None:
                    on_progress(1)
                if isinstance(record, ForeignFormatError):
                    if index == 0:
                        report.inputs += 1
                        reject(record.line, None, "bad_feature_row", record.reason)
                    continue
                if record.caption is not None:
                    item_id = f"{record.image_id}:{record.caption_id}" if record.caption_id else record.image_id
                    pairs = [(item_id, record.caption, None)]
                else:
                    pairs = titles.get(record.image_id) or [(record.image_id, None, None)]
                for item_id, title, split in pairs:
                    if not in_shard(item_id, index, total):
                        continue
                    report.inputs += 1
                    if item_id in seen:
                        reject(line, item_id, "duplicate_id", "the id appeared before")
                        continue
                    seen.add(item_id)
                    if item_id in done:
                        kept_ids.append((item_id, split))
                        continue
                    reason = _import_row(writer, cleaner, record, item_id, title, max_regions, len(classes))
                    if reason is None:
                        kept_ids.append((item_id, split))
                    else:
                        reject(line, item_id, *reason)
            writer.flush()
            report.written = writer.added
            for name in SPLITS:
                ids = [item_id for item_id, s in kept_ids if s == name]
                if ids:
                    writer.set_split(name, ids)
        report.seconds["import"] = round(time.perf_counter() - start, 3)
        return reject.finish(store, report, len(kept_ids))


def _import_row(writer: StoreWriter, cleaner: Callable, record, item_id: str, title: str | None, max_regions: int,
                num_classes: int) -> tuple[str, str] | None:
    """Write one imported item; the quarantine reason and detail when it cannot be."""
    if title is None:
        return "missing_title", "no caption for this image"
    cleaned = cleaner(title)
    if not cleaned.kept:
        return cleaned.reason or "empty", cleaned.title[:80]
    if record.num_regions == 0:
        return "no_regions", "the row has no region"
    best = np.argsort(-record.scores, kind="stable")[:max_regions]
    labels = np.where(record.labels[best] < num_classes, record.labels[best], -1)
    writer.add(Item(item_id, cleaned.title, _word_ends(cleaned.words), record.width, record.height,
                    record.boxes[best], record.features[best], labels, record.scores[best]))
    return None


def _read_captions(path: Path) -> Captions:
    """Captions from a JSONL file with item_id (= the image id), title and split."""
    out: Captions = {}
    for row in iter_json_objects(path):
        if isinstance(row.get("title"), str) and "item_id" in row:
            split = row.get("split")
            image_id = str(row["item_id"])
            out[image_id] = [(image_id, row["title"], split if split in SPLITS else None)]
    return out
