"""`taomm demo`: the whole pipeline on the generated demo catalog, stage by stage, resumable.

Stages, in order (each a function of the :class:`Demo` below, calling the same library
functions as the commands of the same names):

catalog    generate the demo catalog (``taomm init --demo``)
detector   train the product detector on the catalog's boxes (``taomm train-detector``)
prepare    titles + images -> the feature store, bad titles quarantined (``taomm prepare``)
negatives  TF-IDF hard negatives (``taomm mine-negatives``)
vocab      a WordPiece vocabulary of the titles and logged queries (``taomm build-vocab``)
pretrain   MSM + MRM + ITM-hn (+ ITC) pretraining (``taomm pretrain``)
finetune   retrieval finetuning with the catalog's search log (``taomm finetune-retrieval``)
baseline   the same finetuning from the random weights pretraining starts from, its own index
           and precision@5: what pretraining adds
evaluate   text -> image R@1/5/10 on the test split: random, zero-shot (exhaustive ITM),
           finetuned from random weights, finetuned from the pretrained ones
export     item vectors -> the index (``taomm export-embeddings``): the faiss folder, or
           Milvus (``Demo(index="milvus-lite:demo.db")``)
search     example searches and a recommendation; precision@5 over the held-out queries

A finished stage is recorded in ``WORKDIR/demo.json`` with its summary and time; a rerun
skips it (training stages also resume from their last checkpoint), so an interrupted demo
continues where it stopped; a rerun with another index location runs the export and search
stages again. The work folder is a workspace: afterwards ``taomm search "波点荷叶边裙"`` (and
every other command) works there without paths, on the index its ``taomm.toml`` records.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from taomm.errors import OptionError, TaommError
from taomm.workspace import (
    CATALOG_DIR,
    CONFIG_NAME,
    DETECTOR_DIR,
    PRETRAIN_DIR,
    RETRIEVAL_DIR,
    Paths,
    Workspace,
    WorkspaceConfig,
    load_workspace,
    write_workspace,
)

STATE_FILE = "demo.json"
STAGES = ("catalog", "detector", "prepare", "negatives", "vocab", "pretrain", "finetune", "baseline", "evaluate",
          "export", "search")
INDEX_STAGES = STAGES[STAGES.index("export"):]  # what a change of the index location runs again
FLAGSHIP_QUERY = "波点荷叶边裙"
RANDOM_INIT_DIR = "random-init"  # runs/: the random weights pretraining starts from (the baseline's init)
BASELINE_DIR = "retrieval-random"  # runs/: the finetune stage's recipe from those weights, and its index
FINETUNED_ROW = "finetuned from the pretrained weights"  # the evaluate stage's row of the finetune stage's model

# progress(label, total) -> a context manager yielding advance(n): the CLI passes rich bars
Progress = Callable[[str, int | None], AbstractContextManager[Callable[[int], None]]]


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of every stage. The defaults take 14-25 minutes on 2 CPU cores with bf16 (by the hour) and
    about 40 on 2 AVX2-only cores in fp32 (extrapolated, see the README); :meth:`quick` is a small
    version for tests (a few minutes).

    Only what a user of the stage commands sets too: the training recipe (learning rates,
    ITC, ITM ways, log share) is theirs, the from-scratch defaults of ``taomm.train.recipe``."""

    items: int = 2000  # products in the catalog
    seed: int = 0
    image_size: int = 192  # catalog drawings, pixels
    detector_steps: int = 250  # SGD steps of batch 8 at 128 px (about 0.9 s each on 2 cores)
    detector_image_size: int = 128
    detector_fpn_channels: int = 128  # half the step of torchvision's 256 (train-detector's default from scratch)
    preset: str = "mini"  # InterBERT size: H=256, 2 interaction + 1 + 1 extractor layers (CPU)
    pretrain_steps: int = 600  # exhaustive zero-shot R@10 0.06 at 150 steps, 0.86 at 600 (README)
    finetune_steps: int = 800  # run twice (from the pretrained and from random weights): within 15 minutes
    batch_size: int = 32  # the training commands' default
    rerank: int = 16  # ITM rerank of the top K in evaluation (evaluate-retrieval's default) and search
    workers: int = 2

    @classmethod
    def quick(cls) -> DemoConfig:
        return cls(items=240, detector_steps=30, detector_image_size=96, pretrain_steps=20, finetune_steps=40,
                   batch_size=16)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StageRecord:
    seconds: float
    summary: dict[str, Any]


class Demo:
    """The demo's work folder: a workspace plus the record of finished stages.

    ``index``: where the export stage writes, as the workspace's ``taomm.toml`` records it
    (``[paths] index``): a folder, ``milvus-lite:PATH.db`` or ``milvus://HOST:PORT/COLLECTION``,
    a relative path being relative to the work folder. None: what the work folder's
    ``taomm.toml`` records, else its index folder."""

    def __init__(self, workdir: str | os.PathLike[str], config: DemoConfig, progress: Progress,
                 device: str | None = None, index: str | None = None) -> None:
        self.root = Path(workdir).resolve()
        self.config = config
        self.progress = progress
        self.device = device
        self.state_path = self.root / STATE_FILE
        self.records: dict[str, StageRecord] = {}
        if not self.state_path.is_file() and (self.root / CONFIG_NAME).is_file():
            raise OptionError(f"{self.root} is a workspace not made by taomm demo: choose another {{workdir}}",
                              "workdir")
        if self.state_path.is_file():
            state = json.loads(self.state_path.read_text("utf-8"))
            if state.get("config") != config.to_json():
                old, new = state.get("config") or {}, config.to_json()
                changed = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))
                raise OptionError(f"{self.root} holds a demo made with other settings ({', '.join(changed)}): "
                                  "use another {workdir}, or {restart} to start it again", "workdir", "restart")
            self.records = {k: StageRecord(**v) for k, v in state.get("stages", {}).items()}
        self.index_setting = index if index is not None else self._recorded_index()
        exported = self.records.get("export")
        if exported is not None and self._location(exported.summary.get("index", Paths.index)) != self.index:
            for stage in INDEX_STAGES:  # exported elsewhere: export (and search) again
                self.records.pop(stage, None)
        self._check_index()

    # --- paths ---------------------------------------------------------------------------

    @property
    def catalog(self) -> Path:
        return self.root / CATALOG_DIR

    @property
    def store(self) -> Path:
        return self.root / Paths.store

    @property
    def runs(self) -> Path:
        return self.root / Paths.runs

    @property
    def query_log(self) -> Path:
        return self.catalog / "search_log.jsonl"

    @property
    def index(self) -> str:
        """The index location: a folder's absolute path or a Milvus URI (``Workspace.index_location``)."""
        return self._location(self.index_setting)

    def _location(self, setting: str) -> str:
        return Workspace(self.root, WorkspaceConfig(paths=Paths(index=setting))).index_location()

    def _recorded_index(self) -> str:
        if self.state_path.is_file() and (self.root / CONFIG_NAME).is_file():
            return load_workspace(self.root).config.paths.index
        return Paths.index

    def _check_index(self) -> None:
        """A malformed Milvus location, a missing milvus extra or an unreachable server: now,
        not after the training stages."""
        from taomm import milvus_index as milvus

        if not milvus.is_milvus(self.index) or "export" in self.records:
            return
        location = milvus.milvus_location(self.index)
        if self.index.startswith(milvus.SERVER_PREFIX):
            milvus.connect(location)
        else:  # a Lite file: made by the export, not now
            milvus.require_extra()

    def _record_index(self) -> None:
        """Make the workspace's ``taomm.toml`` name the index in effect (once the catalog stage wrote it)."""
        if not (self.root / CONFIG_NAME).is_file():
            return
        workspace = load_workspace(self.root)
        if workspace.config.paths.index != self.index_setting:
            workspace.config.paths.index = self.index_setting
            write_workspace(self.root, workspace.config, overwrite=True)

    # --- running -------------------------------------------------------------------------

    def pending(self) -> list[str]:
        return [s for s in STAGES if s not in self.records]

    def run(self, stage: str) -> StageRecord:
        """Run one stage (or return its record when it already ran)."""
        if stage in self.records:
            return self.records[stage]
        if not self.state_path.is_file():  # before the catalog stage writes taomm.toml: an
            self._save()  # interrupted first stage leaves a folder a rerun knows as the demo's
        self._record_index()  # before the stage: a rerun without the index option keeps this one
        start = time.perf_counter()
        summary = getattr(self, f"_{stage}")()
        record = StageRecord(round(time.perf_counter() - start, 1), summary)
        self.records[stage] = record
        self._save()
        return record

    def _save(self) -> None:
        state = {"config": self.config.to_json(), "stages": {k: asdict(v) for k, v in self.records.items()}}
        tmp = self.state_path.with_name(STATE_FILE + ".tmp")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(state, ensure_ascii=False, indent=2) + "\n", "utf-8")
        os.replace(tmp, self.state_path)

    # --- stages --------------------------------------------------------------------------

    def _catalog(self) -> dict[str, Any]:
        from taomm.datasets.demo_catalog import generate_catalog
        from taomm.workspace import ModelSettings, Sources

        cfg = self.config
        sources = Sources(manifest=f"{CATALOG_DIR}/items.jsonl", annotations=f"{CATALOG_DIR}/annotations.json",
                          queries=f"{CATALOG_DIR}/queries.jsonl", query_log=f"{CATALOG_DIR}/search_log.jsonl")
        write_workspace(self.root, WorkspaceConfig(sources=sources, model=ModelSettings(preset=cfg.preset),
                                                   paths=Paths(index=self.index_setting)), overwrite=True)
        with self.progress("drawing products", cfg.items) as advance:
            summary = generate_catalog(self.catalog, items=cfg.items, seed=cfg.seed, image_size=cfg.image_size,
                                       workers=max(1, cfg.workers), overwrite=True, on_progress=advance)
        return {"items": summary.items, "splits": summary.splits, "queries": summary.queries,
                "bad_titles": summary.title_noise}

    def _detector(self) -> dict[str, Any]:
        from taomm.detectors.detector import ProductDetector
        from taomm.detectors.training import evaluate_detector, image_ids_for_split, train_detector
        from taomm.taxonomy import load_taxonomy

        cfg = self.config
        out = self.runs / DETECTOR_DIR
        annotations, manifest = self.catalog / "annotations.json", self.catalog / "items.jsonl"
        with self.progress("training the detector", cfg.detector_steps) as advance:
            result = train_detector(annotations, self.catalog / "images", out, list(load_taxonomy("taobao33").classes),
                                    max_steps=cfg.detector_steps, image_size=cfg.detector_image_size,
                                    fpn_channels=cfg.detector_fpn_channels,
                                    workers=cfg.workers, seed=cfg.seed, device=self._device(),
                                    image_ids=image_ids_for_split(annotations, manifest, "train"),
                                    on_step=lambda step, loss: advance(1))
        test = image_ids_for_split(annotations, manifest, "test")
        with self.progress("evaluating the detector", len(test)) as advance:
            metrics = evaluate_detector(ProductDetector.load(out), annotations, self.catalog / "images",
                                        image_ids=test, workers=cfg.workers, on_batch=advance)
        return {"steps": result.steps, "final_loss": round(result.final_loss, 3),
                "mAP": round(metrics["mAP"], 3), "mAP@0.5": round(metrics["mAP@0.5"], 3),
                "boxes_mAP@0.5": round(metrics["boxes_mAP@0.5"], 3)}

    def _prepare(self) -> dict[str, Any]:
        from taomm.detectors.extract import PrepareSource, prepare

        report = prepare(PrepareSource(self.catalog / "items.jsonl"), self.store, detector=self.runs / DETECTOR_DIR,
                         workers=self.config.workers, device=self._device(), progress=self.progress)
        return {"inputs": report.inputs, "ok": report.ok, "quarantined": report.quarantined,
                "reasons": report.reasons, "probe": self._probe()}

    def _probe(self) -> dict[str, Any]:
        """What the stored region features carry: a linear probe per attribute group, fitted on
        the train items' regions and scored on the test items' (``taomm evaluate-detector``
        reports the same from fresh extraction)."""
        from taomm.datasets.sharded import open_store
        from taomm.detectors.probe import probe_attributes, store_samples
        from taomm.detectors.training import CocoBoxes, image_ids_for_split

        annotations, manifest = self.catalog / "annotations.json", self.catalog / "items.jsonl"
        parts = [CocoBoxes(annotations, self.catalog / "images", image_ids_for_split(annotations, manifest, split))
                 for split in ("train", "test")]
        with open_store(self.store) as store:
            train, test = (store_samples(store, data) for data in parts)
        return probe_attributes(train, test, parts[0].attribute_vocab)

    def _negatives(self) -> dict[str, Any]:
        from taomm.datasets.store_negatives import mine_store_negatives

        with self.progress("mining hard negatives", None) as advance:
            indices = mine_store_negatives(self.store, on_progress=advance)
        return {"items": len(indices), "mean_negatives": round(float((indices >= 0).sum(1).mean()), 1)}

    def _vocab(self) -> dict[str, Any]:
        from taomm.datasets.retrieval import logged_queries
        from taomm.datasets.store_vocab import build_store_vocab

        _, info, _ = build_store_vocab(self.store, extra_texts=logged_queries(self.query_log))
        return {"vocab_size": info["vocab_size"]}

    def _pretrain(self) -> dict[str, Any]:
        from taomm.model import InterBertConfig
        from taomm.train.pretrain import pretrain
        from taomm.train.recipe import resolve_pretrain

        cfg = self.config
        run = self.runs / PRETRAIN_DIR
        recipe, _ = resolve_pretrain(from_scratch=True)
        with self.progress("pretraining", cfg.pretrain_steps) as advance:
            result, _ = pretrain(self.store, run, model_config=InterBertConfig.from_preset(cfg.preset),
                                 train=self._train_config(cfg.pretrain_steps, recipe.lr), itc_weight=recipe.itc,
                                 resume=_has_checkpoint(run), device=self._device(),
                                 on_step=lambda step, metrics: advance(1))
        return {**_training_summary(result), "recipe": asdict(recipe)}

    def _finetune(self, init: Path | None = None, run: Path | None = None,
                  label: str = "finetuning retrieval") -> dict[str, Any]:
        """Retrieval finetuning of ``init`` (default: the pretraining run) into ``run``."""
        from taomm.train.finetune import finetune_retrieval
        from taomm.train.recipe import initialised_from, resolve_finetune

        cfg = self.config
        run, init = run or self.runs / RETRIEVAL_DIR, init or self.runs / PRETRAIN_DIR
        recipe, _ = resolve_finetune(from_scratch=initialised_from(init) is None)
        with self.progress(label, cfg.finetune_steps) as advance:
            result, _ = finetune_retrieval(self.store, init, run,
                                           train=self._train_config(cfg.finetune_steps, recipe.lr),
                                           negatives=recipe.negatives, query_log=self.query_log,
                                           log_p=recipe.log_share, item_loss=recipe.item_loss, dropout=recipe.dropout,
                                           resume=_has_checkpoint(run),
                                           device=self._device(), on_step=lambda step, metrics: advance(1))
        return {**_training_summary(result), "recipe": asdict(recipe)}

    def _baseline(self) -> dict[str, Any]:
        """What pretraining adds: the finetune stage again (same recipe, steps and seed), from
        the random weights the pretraining started from; its item vectors exported to an index
        of its own (``runs/retrieval-random/index``) and scored on the held-out queries."""
        from taomm.model import InterBertConfig
        from taomm.search import SearchEngine
        from taomm.train.pretrain import save_initial_weights

        cfg = self.config
        init, run = self.runs / RANDOM_INIT_DIR, self.runs / BASELINE_DIR
        if not (init / "config.json").is_file():
            save_initial_weights(self.store, init, model_config=InterBertConfig.from_preset(cfg.preset), seed=cfg.seed)
        summary = self._finetune(init, run, label="finetuning from random weights")
        self._export_model(run / "model", str(run / "index"))
        engine = SearchEngine(run / "index", device=self._device())
        by_kind = precision_by_kind(engine, self._queries(), self._attributes(), k=5)
        return {**summary, "by_kind": by_kind["photo + title"]}

    def _evaluate(self) -> dict[str, Any]:
        from taomm.datasets.sharded import open_store
        from taomm.model import InterBertForPretraining, InterBertForRetrieval
        from taomm.model.pretrained import VOCAB_NAME
        from taomm.retrieval import evaluate
        from taomm.text.tokenizer import TitleTokenizer

        k = self.config.rerank
        rows: dict[str, dict[str, Any]] = {}
        with open_store(self.store) as store:
            ordinals = np.sort(store.split("test"))
            for name, cls, folder, mode in (
                    ("random ranking", InterBertForRetrieval, RETRIEVAL_DIR, "random"),
                    ("zero-shot (pretrained; exhaustive ITM)", InterBertForPretraining, PRETRAIN_DIR, "exhaustive"),
                    ("finetuned from random weights (same steps)", InterBertForRetrieval, BASELINE_DIR, "rerank"),
                    (FINETUNED_ROW, InterBertForRetrieval, RETRIEVAL_DIR, "rerank")):
                model_dir = self.runs / folder / "model"
                model = cls.from_pretrained(model_dir).eval()
                result = evaluate(model, store, TitleTokenizer(model_dir / VOCAB_NAME), ordinals, mode, k=k,
                                  seed=self.config.seed, progress=self.progress)
                rows[name] = {"mode": mode, **{key: round(result[key], 3) for key in ("R@1", "R@5", "R@10")}}
        return {"items": len(ordinals), "rerank": k, "recall": rows}

    def _export(self) -> dict[str, Any]:
        from taomm.milvus_index import is_milvus
        from taomm.onnx_text import require_exporter

        onnx = False  # the ONNX query encoder too where the onnx extra is installed: a quick `taomm search`
        if not is_milvus(self.index):  # (a Milvus index encodes queries in torch)
            try:
                require_exporter()
                onnx = True
            except TaommError:
                pass
        total, version = self._export_model(self.runs / RETRIEVAL_DIR / "model", self.index, onnx=onnx)
        # a faiss version folder, or a Milvus collection's name (COLLECTION_vNNNN)
        name = version.name if isinstance(version, Path) else version
        return {"items": total, "index": self.index_setting, "version": name, "onnx": onnx}

    def _search(self) -> dict[str, Any]:
        from taomm.search import SearchEngine

        engine = SearchEngine(self.index, device=self._device())
        queries, attributes = self._queries(), self._attributes()
        quality = {"search": query_precision(engine, queries, attributes, k=5),
                   "rerank": query_precision(engine, queries, attributes, k=5, rerank=self.config.rerank)}
        examples = [FLAGSHIP_QUERY, *pick_examples(queries, 2)]
        searches = {q: [h.to_json() for h in engine.search(q, k=5)] for q in examples}
        item = engine.index.item_ids[0]
        similar = [h.to_json() for h in engine.recommend(item, k=5)]
        by_kind = precision_by_kind(engine, queries, attributes, k=5)
        return {"precision": quality, "by_kind": by_kind, "searches": searches,
                "recommend": {"item": item, "similar": similar}}

    # --- helpers -------------------------------------------------------------------------

    def _export_model(self, model_dir: Path, location: str, onnx: bool = False) -> tuple[int, Any]:
        """``export_index`` of ``model_dir``'s item vectors to ``location``: (items, version)."""
        from taomm.datasets.sharded import open_store
        from taomm.index import export_index

        with open_store(self.store) as fs:
            total = len(fs)
        with self.progress("exporting item vectors", total) as advance:
            version = export_index(model_dir, self.store, location, manifest=self.catalog / "items.jsonl",
                                   device=self._device(), onnx=onnx, on_progress=advance)
        return total, version

    def _queries(self) -> list[dict[str, Any]]:
        """The catalog's held-out queries."""
        return list(_read_jsonl(self.catalog / "queries.jsonl"))

    def _attributes(self) -> dict[str, dict[str, Any]]:
        """Every catalog item's attributes (the ground truth of the held-out queries)."""
        return {row["item_id"]: row["attributes"] for row in _read_jsonl(self.catalog / "items.jsonl")}

    def _device(self) -> str:
        from taomm.device import resolve_device

        return resolve_device(self.device)

    def _train_config(self, steps: int, lr: float):
        from taomm.train import TrainConfig

        cfg = self.config  # else the commands' defaults; only checkpoints, logging and loader workers differ
        return TrainConfig(max_steps=steps, batch_size=cfg.batch_size, lr=lr, save_every=max(50, steps // 4),
                           keep_last=1, log_every=max(1, steps // 20), seed=cfg.seed, workers=min(cfg.workers, 1))


def restart(workdir: str | os.PathLike[str]) -> None:
    """Remove what a previous demo wrote in ``workdir`` (only the demo's own folders and files;
    a folder without the demo's record is left alone)."""
    root = Path(workdir)
    if not (root / STATE_FILE).is_file():
        if root.is_dir() and any(root.iterdir()):
            raise OptionError(f"{root} holds no demo ({STATE_FILE} is missing): not removing anything; "
                              "choose another {workdir}", "workdir")
        return
    index = _own_index(root)
    for path in (*(root / name for name in (CATALOG_DIR, Paths.store, Paths.runs, Paths.index)), index):
        if path is not None and path.is_dir():
            shutil.rmtree(path)
        elif path is not None and path.is_file():
            path.unlink()
    for name in (STATE_FILE, CONFIG_NAME):
        (root / name).unlink(missing_ok=True)


def _own_index(root: Path) -> Path | None:
    """The index folder or Milvus Lite file the demo's ``taomm.toml`` names, when it lies in
    the work folder (a Milvus server's collections are left alone)."""
    from taomm.milvus_index import LITE_PREFIX, SERVER_PREFIX

    if not (root / CONFIG_NAME).is_file():
        return None
    location = load_workspace(root).index_location()
    if location.startswith(SERVER_PREFIX):
        return None
    path = Path(location.removeprefix(LITE_PREFIX))
    return path if path.is_relative_to(root.resolve()) and path != root.resolve() else None


def query_precision(engine: Any, queries: list[dict[str, Any]], attributes: dict[str, dict[str, Any]], k: int = 5,
                    rerank: int | None = None) -> dict[str, Any]:
    """Precision@k of ``engine.search`` (its default rerank unless ``rerank`` is given) over
    held-out queries, against the whole index.

    An item is relevant to a query when its attributes satisfy the query's constraints
    (the catalog's ground truth; every indexed item counts, not only the test split). Two
    figures: ``precision@k`` over the queries with at least ``k`` relevant items in the
    index (where a perfect ranking scores 1), and ``precision@k_all`` over every query with
    a relevant item, dividing by min(k, relevant) so a query with 2 relevant items found at
    ranks 1-2 also scores 1."""
    from taomm.datasets.demo_catalog import matches

    indexed = [i for i in engine.index.item_ids if i in attributes]
    full, capped = [], []
    for query in queries:
        relevant = {i for i in indexed if matches(attributes[i], query["constraints"])}
        if not relevant:
            continue
        hits = sum(h.item_id in relevant for h in engine.search(query["query"], k=k, rerank=rerank))
        capped.append(hits / min(k, len(relevant)))
        if len(relevant) >= k:
            full.append(hits / k)
    return {f"precision@{k}": round(float(np.mean(full)), 3) if full else None, "queries": len(full),
            f"precision@{k}_all": round(float(np.mean(capped)), 3) if capped else None, "queries_all": len(capped)}


# Attribute kinds of a query's constraints: a query counts under each kind it names.
KINDS = {"colour": ("colour",), "pattern": ("pattern",), "style": ("style",), "product": ("product", "generic")}
VARIANTS = ("title", "photo", "photo + title")


def precision_by_kind(engine: Any, queries: list[dict[str, Any]], attributes: dict[str, dict[str, Any]], k: int = 5,
                      batch_size: int = 128) -> dict[str, dict[str, Any]]:
    """What the photo adds: precision@k of the held-out queries per attribute kind (colour,
    pattern, style, product) for item vectors built three ways by the engine's model:

    - ``title``: the title alone through the text encoder (the query's own tower);
    - ``photo``: the photo's regions alone (the image vector, photo search's);
    - ``photo + title``: the cross-modal item vector (what listing search uses).

    Each query is encoded as search encodes it and ranks every indexed item exactly
    (cosine); only queries with at least ``k`` relevant indexed items count, as in
    :func:`query_precision`. Returns ``{variant: {kind: {"precision@k", "queries"}}}`` plus
    an ``all`` kind over every counted query."""
    import torch

    from taomm.datasets.demo_catalog import matches
    from taomm.device import autocast
    from taomm.retrieval import encode_items

    model, store, cfg = engine.model, engine.store, engine.model.config
    ids = [i for i in engine.index.item_ids if i in attributes]
    ordinals = [store.ordinal(i) for i in ids]
    parts: dict[str, list[np.ndarray]] = {v: [] for v in VARIANTS}
    with torch.no_grad(), autocast(engine.device, engine.bf16):
        for start in range(0, len(ordinals), batch_size):
            enc = encode_items(store, ordinals[start:start + batch_size], engine.tokenizer,
                               max_tokens=cfg.max_text_tokens, max_regions=cfg.max_regions)
            text = (enc.input_ids.to(engine.device), enc.attention_mask.to(engine.device))
            regions = tuple(t.to(engine.device) for t in (enc.region_features, enc.region_boxes, enc.region_mask))
            parts["title"].append(model.encode_text(*text).float().cpu().numpy())
            parts["photo"].append(model.encode_image(*regions).float().cpu().numpy())
            parts["photo + title"].append(model.encode_item(*text, *regions).float().cpu().numpy())
    vectors = {v: np.concatenate(p) for v, p in parts.items()}
    found: dict[str, dict[str, list[float]]] = {v: {kind: [] for kind in (*KINDS, "all")} for v in VARIANTS}
    for query in queries:
        relevant = {i for i in ids if matches(attributes[i], query["constraints"])}
        if len(relevant) < k:
            continue
        _, q = engine.encode_query(query["query"])
        kinds = [kind for kind, keys in KINDS.items() if any(key in query["constraints"] for key in keys)]
        for variant, matrix in vectors.items():
            top = np.argsort(-(matrix @ q[0]), kind="stable")[:k]
            precision = sum(ids[i] in relevant for i in top) / k
            for kind in (*kinds, "all"):
                found[variant][kind].append(precision)
    return {variant: {kind: {f"precision@{k}": round(float(np.mean(p)), 3) if p else None, "queries": len(p)}
                      for kind, p in per_kind.items()} for variant, per_kind in found.items()}


def pick_examples(queries: list[dict[str, Any]], count: int) -> list[str]:
    """Queries with the most relevant test items, other than the flagship one."""
    ranked = sorted(queries, key=lambda q: (-len(q["relevant"]), q["query"]))
    return [q["query"] for q in ranked if q["query"] != FLAGSHIP_QUERY][:count]


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _has_checkpoint(run: Path) -> bool:
    from taomm.train.checkpoint import latest_checkpoint

    return run.is_dir() and latest_checkpoint(run) is not None


def _training_summary(result: Any) -> dict[str, Any]:
    return {"steps": result.step, "samples_per_s": round(result.samples_per_s, 1),
            "last": {k: v for k, v in result.last_metrics.items() if k not in ("step", "lr")}}
