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

Three loops write a store: :func:`prepare_store` (images through an extractor),
:func:`import_regions` (regions extracted elsewhere) and
:func:`~taomm.datasets.vcr_prepare.prepare_vcr`. They share one frame, :func:`prepare_run`:
the lock, report, quarantine, resume set, writer and splits. The extractors (a detector,
a foreign feature file) are built in :mod:`taomm.detectors.extract`, which also holds
``prepare``, the one entry point of ``taomm prepare`` and the demo.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from taomm.datasets.images import ImageError, load_image
from taomm.datasets.manifest import ManifestEntry, Rejected, iter_json_objects, read_manifest
from taomm.datasets.store import FeatureStore, Item, StoreLock, StoreWriter, is_store, word_ends_of
from taomm.errors import OptionError
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


class Quarantine:
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


def stored_ids(store: Path) -> set[str]:
    """The item ids already in ``store`` (none while it does not exist)."""
    if not is_store(store):
        return set()
    with FeatureStore(store) as fs:
        return set(fs.item_ids())


def handled_ids(store: Path) -> set[str]:
    """The item ids a finished run of ``store`` took: those in the store and those in its
    quarantine (an input without a readable id has none)."""
    quarantine = Path(store) / "quarantine.jsonl"
    rows = quarantine.read_text("utf-8").splitlines() if quarantine.is_file() else []
    quarantined = {json.loads(row)["item_id"] for row in rows if row.strip()}
    return stored_ids(Path(store)) | (quarantined - {None})


class PrepareRun:
    """The frame every prepare loop shares (made by :func:`prepare_run`): ``report`` and
    ``quarantine`` collect the verdicts, ``done`` holds the ids an earlier run stored (only
    counted again: what makes a rerun resume), ``kept`` the (item id, split) of each input
    in the store after this run."""

    def __init__(self, store: Path, lock: StoreLock, shard: tuple[int, int]) -> None:
        self.store, self.lock, self.shard = store, lock, shard
        self.report = PrepareReport(shard=f"{shard[0]}/{shard[1]}")
        self.quarantine = Quarantine()
        self.done = stored_ids(store)
        self.kept: list[tuple[str, str | None]] = []

    def owns(self, item_id: str) -> bool:
        """Whether ``item_id`` belongs to this run's shard."""
        return in_shard(item_id, *self.shard)

    def reject_input(self, line: int, item_id: str | None, reason: str, detail: str) -> None:
        """Count and quarantine an input refused as it was read, if this shard owns it: one
        without a readable id belongs to shard 0, so it is counted once."""
        if self.owns(item_id) if item_id else self.shard[0] == 0:
            self.report.inputs += 1
            self.quarantine(line, item_id, reason, detail)

    def writer(self, *, language: str, feature_dim: int, taxonomy: str, classes: Sequence[str],
               batch_size: int) -> StoreWriter:
        """The store's writer, under this run's lock."""
        return StoreWriter(self.store, language=language, feature_dim=feature_dim, taxonomy=taxonomy,
                           classes=classes, batch_size=batch_size, lock=self.lock)

    def record_splits(self, writer: StoreWriter, splits: dict[str, list[str]] | None = None) -> None:
        """Commit the writer's items, count them and record ``splits``: by default each
        split's kept items in order, empty splits left out."""
        writer.flush()
        self.report.written = writer.added
        if splits is None:
            splits = {name: [item_id for item_id, s in self.kept if s == name] for name in SPLITS}
            splits = {name: ids for name, ids in splits.items() if ids}
        for name, ids in splits.items():
            writer.set_split(name, ids)

    def finish(self) -> PrepareReport:
        """Write STORE/quarantine.jsonl and STORE/report.json; return the report."""
        return self.quarantine.finish(self.store, self.report, len(self.kept))


@contextmanager
def prepare_run(store: str | os.PathLike[str], shard: tuple[int, int] = (0, 1)) -> Iterator[PrepareRun]:
    """A :class:`PrepareRun` of ``store`` holding its writer lock throughout: a second
    writer is refused now, before any work."""
    with StoreLock(store) as lock:
        yield PrepareRun(Path(store), lock, shard)


def uint8_image(path: Path) -> torch.Tensor:
    """The safely decoded image at ``path`` as a (3, H, W) uint8 tensor; raises ImageError."""
    array = np.asarray(load_image(path), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def one_by_one(dataset: Dataset, workers: int) -> DataLoader:
    """``dataset``'s samples one at a time and uncollated, made in ``workers`` processes:
    each image is extracted alone (see the module docstring)."""
    return DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=_as_is)


def _as_is(sample):
    return sample


def _ignore(count: int) -> None:
    pass


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 3)


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
            image = uint8_image(self.paths[index])
        except ImageError as exc:
            return index, None, exc.reason, exc.detail
        return index, image, None, None


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
        raise OptionError(f"{{shard}} must be I/N with 0 <= I < N, got {index}/{total}", "shard")
    advance = on_progress or _ignore
    with prepare_run(store, shard) as run:
        cleaner = make_cleaner(language)
        start = time.perf_counter()
        entries = read_manifest(Path(manifest)) if isinstance(manifest, str | os.PathLike) else manifest
        pending = _clean_titles(run, entries, cleaner)
        run.report.seconds["manifest_and_text"] = _since(start)
        advance(run.report.inputs - len(pending))
        start = time.perf_counter()
        with run.writer(language=language, feature_dim=feature_dim, taxonomy=taxonomy, classes=classes,
                        batch_size=batch_size) as writer:
            _add_regions(run, writer, pending, extract, workers, advance)
            run.record_splits(writer)
            run.report.seconds["images_and_regions"] = _since(start)
        return run.finish()


def _clean_titles(run: PrepareRun, entries: Iterable[ManifestEntry | Rejected],
                  cleaner: Callable) -> list[_Pending]:
    """Stage 1 (cheap, in order): the manifest's verdicts and the cleaned titles of the items
    still to extract; items already stored are only counted."""
    pending: list[_Pending] = []
    for entry in entries:
        if isinstance(entry, Rejected):
            run.reject_input(entry.line, entry.item_id, entry.reason, entry.detail)
            continue
        if not run.owns(entry.item_id):
            continue
        run.report.inputs += 1
        if entry.item_id in run.done:
            run.kept.append((entry.item_id, entry.split))
            continue
        cleaned = cleaner(entry.title)
        if not cleaned.kept:
            run.quarantine(entry.line, entry.item_id, cleaned.reason or "empty", cleaned.title[:80])
            continue
        pending.append(_Pending(entry, cleaned.title, cleaned.words))
    return pending


def _add_regions(run: PrepareRun, writer: StoreWriter, pending: list[_Pending],
                 extract: Callable[[torch.Tensor], dict[str, np.ndarray]], workers: int,
                 advance: Callable[[int], None]) -> None:
    """Stage 2: images (decoded in worker processes) and regions, written in manifest order;
    consecutive items of one image share its detection."""
    last: tuple[Path | None, dict[str, np.ndarray] | None] = (None, None)
    for i, image, reason, detail in one_by_one(_Images(pending), workers):
        entry = pending[i].entry
        if image is None:
            run.quarantine(entry.line, entry.item_id, reason, detail)
        else:
            regions = last[1] if last[0] == entry.image else extract(image)
            last = (entry.image, regions)
            writer.add(Item(entry.item_id, pending[i].title, word_ends_of(pending[i].words), int(image.shape[2]),
                            int(image.shape[1]), regions["boxes"], regions["features"], regions["labels"],
                            regions["scores"]))
            run.kept.append((entry.item_id, entry.split))
        advance(1)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


# image id -> the captions of that image: (item id, caption, split)
Captions = dict[str, list[tuple[str, str, str | None]]]


def import_regions(
    rows: Iterable[Any],
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
    """Import region features extracted elsewhere instead of running a detector. ``rows``
    yields per image a record with the fields of a :class:`~taomm.detectors.foreign.ForeignRecord`
    or a bad row as a :class:`Rejected`; it is first iterated once the store is open.

    A row with a caption (KDD) is one item, id ``image_id:caption_id``; other rows take
    theirs from ``captions``: a JSONL file (``item_id`` = the image id, ``title``, optional
    ``split``) or, from a dataset adapter, every caption of each image (one item per
    caption, sharing the row's regions; ``rejected``: the adapter's unusable captions, for
    the quarantine). Rows keep their ``max_regions`` best-scoring
    regions; bad rows, titles and duplicates are quarantined as in :func:`prepare_store`."""
    advance = on_progress or _ignore
    with prepare_run(store, shard) as run:
        titles = (captions or {}) if captions is None or isinstance(captions, dict) else _read_captions(captions)
        cleaner = make_cleaner(language)
        start = time.perf_counter()
        for bad in rejected:
            run.reject_input(bad.line, bad.item_id, bad.reason, bad.detail)
        with run.writer(language=language, feature_dim=feature_dim, taxonomy=taxonomy, classes=classes,
                        batch_size=batch_size) as writer:
            items = _Import(run, writer, cleaner, max_regions, len(classes))
            for line, record in enumerate(rows, 1):
                advance(1)
                if isinstance(record, Rejected):
                    run.reject_input(record.line, record.item_id, record.reason, record.detail)
                    continue
                for item_id, title, split in _captions_of(record, titles):
                    if run.owns(item_id):
                        items.add(line, record, item_id, title, split)
            run.record_splits(writer)
        run.report.seconds["import"] = _since(start)
        return run.finish()


def _captions_of(record: Any, titles: Captions) -> list[tuple[str, str | None, str | None]]:
    """The items of one imported row: (item id, caption or None, split)."""
    if record.caption is not None:
        item_id = f"{record.image_id}:{record.caption_id}" if record.caption_id else record.image_id
        return [(item_id, record.caption, None)]
    return titles.get(record.image_id) or [(record.image_id, None, None)]


@dataclass
class _Import:
    """Writes the items of imported rows (:func:`import_regions`) into a run's store."""

    run: PrepareRun
    writer: StoreWriter
    cleaner: Callable
    max_regions: int
    num_classes: int
    seen: set[str] = field(default_factory=set)

    def add(self, line: int, record: Any, item_id: str, title: str | None, split: str | None) -> None:
        """Count one item, then keep it (stored now or before) or quarantine it."""
        self.run.report.inputs += 1
        if item_id in self.seen:
            self.run.quarantine(line, item_id, "duplicate_id", "the id appeared before")
            return
        self.seen.add(item_id)
        reason = None if item_id in self.run.done else self._write(record, item_id, title)
        if reason is None:
            self.run.kept.append((item_id, split))
        else:
            self.run.quarantine(line, item_id, *reason)

    def _write(self, record: Any, item_id: str, title: str | None) -> tuple[str, str] | None:
        """Write one imported item; the quarantine reason and detail when it cannot be."""
        if title is None:
            return "missing_title", "no caption for this image"
        cleaned = self.cleaner(title)
        if not cleaned.kept:
            return cleaned.reason or "empty", cleaned.title[:80]
        if record.num_regions == 0:
            return "no_regions", "the row has no region"
        best = np.argsort(-record.scores, kind="stable")[:self.max_regions]
        labels = np.where(record.labels[best] < self.num_classes, record.labels[best], -1)
        self.writer.add(Item(item_id, cleaned.title, word_ends_of(cleaned.words), record.width, record.height,
                             record.boxes[best], record.features[best], labels, record.scores[best]))
        return None


def _read_captions(path: str | os.PathLike[str]) -> Captions:
    """Captions from a JSONL file with item_id (= the image id), title and split."""
    out: Captions = {}
    for row in iter_json_objects(Path(path)):
        if isinstance(row.get("title"), str) and "item_id" in row:
            split = row.get("split")
            image_id = str(row["item_id"])
            out[image_id] = [(image_id, row["title"], split if split in SPLITS else None)]
    return out
