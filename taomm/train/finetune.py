"""Text-to-image retrieval finetuning (paper section 2.4 / 3.3), through the shared trainer.

Three losses per batch of B captions:
- ``match``: the paper's 4-way multiple choice: ITM scores of the caption with its image
  and 3 negative images (hard ones from TF-IDF, see ``taomm.datasets.retrieval``),
  cross-entropy with the right image as the answer;
- ``contrastive``: beyond the paper, symmetric InfoNCE between the text-alone vectors of
  the captions' queries (the caption, a few of its words or a logged query: see
  ``taomm.datasets.retrieval``) and the image-alone vectors (``encode_text`` /
  ``encode_image``), every other query/image of the global batch a negative (gathered
  across DDP ranks inside the loss), so search can recall candidates from a vector index
  and rerank them with ITM;
- ``item``: the cross-modal item vector (image + full title) of each item is what its
  query's text vector must find among the global batch's items (search over listings);
  items that answer the same queries end up near each other (recommendation). Pulling the
  item vector towards its own image vector as well (an earlier version) lowered the demo's
  precision@5 0.715 -> 0.655: the photo features carry less of the pattern than the title.

``contrastive`` and ``item`` are weighed (``contrastive`` and ``item_loss``, 1 each by
default); a weight of 0 leaves the loss out, its passes undone and its heads frozen, so
both at 0 train the paper's recipe alone. In-batch negatives skip the items that share the
row's photo or title (``taomm.train.losses``).

A run folder holds ``run.json`` (the options, and the ``init_from`` of the pretraining run
passed on: see ``taomm.train.recipe``), ``metrics.jsonl``, ``tensorboard/``, ``checkpoints/`` and
``model/`` (``save_pretrained``: config, weights, vocab.txt).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from taomm.datasets.retrieval import RetrievalData, collate_retrieval, read_query_log
from taomm.datasets.sharded import open_store
from taomm.errors import TaommError
from taomm.model import InterBertConfig, InterBertForRetrieval
from taomm.model.pretrained import CONFIG_NAME, VOCAB_NAME, WEIGHTS_NAME
from taomm.text.tokenizer import TitleTokenizer
from taomm.train.distributed import DistInfo, parallelize, setup
from taomm.train.flops import layer_macs
from taomm.train.losses import contrastive_sums, gather_with_grad, leave_out, same_group
from taomm.train.pretrain import MAX_LOGIT_SCALE, MODEL_DIR, RUN_OPTIONS, training_ordinals
from taomm.train.recipe import initialised_from
from taomm.train.trainer import TrainConfig, Trainer, TrainResult

log = logging.getLogger(__name__)
LOSSES = ("match", "contrastive", "item")  # match: the paper's; the others beyond it, each with its weight


def resolve_model_dir(path: str | os.PathLike[str]) -> Path:
    """A model folder (config.json + model.safetensors), or a run folder holding ``model/``."""
    folder = Path(path)
    for candidate in (folder, folder / MODEL_DIR):  # a run folder has a config.json too: look for weights
        if (candidate / CONFIG_NAME).is_file() and (candidate / WEIGHTS_NAME).is_file():
            return candidate
    raise TaommError(f"{folder} is neither a model folder (config.json + model.safetensors) nor a run with model/")


class RetrievalTraining(nn.Module):
    """One forward for everything a finetuning step needs (DDP wraps this module); the
    query, image and item vectors only for the losses in ``losses`` that use them (None
    otherwise)."""

    def __init__(self, model: InterBertForRetrieval, losses: tuple[str, ...] = LOSSES) -> None:
        super().__init__()
        self.model = model
        self.losses = losses

    def forward(self, input_ids, attention_mask, region_features, region_boxes, region_mask, query_ids, query_mask):
        # input_ids (B, T); query_ids (B, Q); region_* (B, C, R, ...) with the right image first
        B, C = region_features.shape[:2]
        # ITM on the full caption: on the queries instead (with the item vector from an extra
        # pass) it reranked no better and search precision@5 fell 0.376 -> 0.327 (measured)
        out = self.model(input_ids.repeat_interleave(C, 0), attention_mask.repeat_interleave(C, 0),
                         region_features.flatten(0, 1), region_boxes.flatten(0, 1), region_mask.flatten(0, 1))
        text = image = item = None
        if "contrastive" in self.losses or "item" in self.losses:
            text = self.model.encode_text(query_ids, query_mask)  # (B, E)
        if "contrastive" in self.losses:
            image = self.model.encode_image(region_features[:, 0], region_boxes[:, 0], region_mask[:, 0])  # (B, E)
        if "item" in self.losses:
            h = out.backbone
            item = self.model.item_head(h.image_cls.view(B, C, -1)[:, 0], h.text_cls.view(B, C, -1)[:, 0])  # (B, E)
        return (out.itm_logits.view(B, C), text, image, item,
                self.model.contrastive.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE))


@dataclass
class RetrievalTask:
    """The losses of ``LOSSES`` whose weight is not 0 (``match`` always, weight 1): with
    ``contrastive_weight`` and ``item_weight`` 0, the paper's recipe alone."""

    dataset: RetrievalData
    config: InterBertConfig
    contrastive_weight: float = 1.0
    item_weight: float = 1.0

    def __post_init__(self) -> None:
        weights = {"match": 1.0, "contrastive": self.contrastive_weight, "item": self.item_weight}
        if min(weights.values()) < 0:
            raise TaommError(f"loss weights must be >= 0, not {weights}")
        self.loss_names: tuple[str, ...] = tuple(name for name in LOSSES if weights[name])
        self.loss_weights: tuple[float, ...] = tuple(weights[name] for name in self.loss_names)

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return collate_retrieval(examples, pad_id=self.dataset.tokenizer.pad_id)

    def counts(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.full((len(self.loss_names),), float(batch["input_ids"].shape[0]))

    def loss_sums(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        choices, text, image, item, scale = model(batch["input_ids"], batch["attention_mask"], batch["region_features"],
                                                  batch["region_boxes"], batch["region_mask"], batch["query_ids"],
                                                  batch["query_mask"])
        target = torch.zeros(choices.shape[0], dtype=torch.long, device=choices.device)
        sums = {"match": F.cross_entropy(choices.float(), target, reduction="sum")}
        groups = batch.get("groups")  # another caption of the photo, or the same title: not a negative
        if "contrastive" in self.loss_names:
            sums["contrastive"] = contrastive_sums(text, image, scale, groups)[0]
        if "item" in self.loss_names:
            all_items, offset = gather_with_grad(item.float())
            rows = torch.arange(item.shape[0], device=item.device) + offset
            logits = scale.detach() * text.float() @ all_items.T
            sums["item"] = F.cross_entropy(leave_out(logits, same_group(groups, rows)), rows, reduction="sum")
        return torch.stack([sums[name] for name in self.loss_names])

    def flops(self, batch: dict[str, torch.Tensor]) -> float:
        cfg = self.config
        B, T = batch["input_ids"].shape
        C, R = batch["region_features"].shape[1:3]
        n_img = R + 1
        pair = (layer_macs(cfg, cfg.num_interaction_layers, n_img + T) + layer_macs(cfg, cfg.num_extractor_layers, n_img)
                + layer_macs(cfg, cfg.num_extractor_layers, T) + n_img * cfg.region_feature_dim * cfg.hidden_size)
        layers = cfg.num_interaction_layers + cfg.num_extractor_layers
        query = layer_macs(cfg, layers, batch["query_ids"].shape[1]) if len(self.loss_names) > 1 else 0
        image = layer_macs(cfg, layers, n_img) if "contrastive" in self.loss_names else 0
        item = 2 * cfg.hidden_size * cfg.hidden_size + cfg.hidden_size * cfg.item_embedding_size \
            if "item" in self.loss_names else 0
        return 2 * 3 * B * (C * pair + query + image + item)


def _read_log(query_log: str | os.PathLike[str] | None, store: Any,
              log_p: float) -> tuple[dict[int, list[list[str]]], dict[str, Any] | None]:
    """The logged queries by item ordinal (none without ``query_log``) and what the run records of the log."""
    if query_log is None:
        return {}, None
    read = read_query_log(query_log, store, store.meta.language)
    if not read.queries:
        raise TaommError(f"query log {query_log}: no usable (query, item) pair ({read.skipped or 'empty file'})")
    return read.queries, {"path": str(Path(query_log).resolve()), "lines": read.lines, "pairs": read.pairs,
                          "items": len(read.queries), "skipped": read.skipped, "log_p": log_p}


def _freeze_unused(model: InterBertForRetrieval, losses: tuple[str, ...]) -> None:
    """Freeze the heads no loss in ``losses`` uses: untouched, and DDP does not wait for their gradients."""
    head = model.contrastive
    unused = [*(() if "contrastive" in losses else (head.image_proj, head.logit_scale)),
              *(() if len(losses) > 1 else (head.text_proj,)),
              *(() if "item" in losses else (model.item_head,))]
    for part in unused:
        for param in ([part] if isinstance(part, nn.Parameter) else part.parameters()):
            param.requires_grad_(False)


def finetune_retrieval(store_path: str | os.PathLike[str], init: str | os.PathLike[str], run: str | os.PathLike[str], *,
                       train: TrainConfig, negatives: int = 3, hard_p: float = 0.5, split: str | None = None,
                       query_log: str | os.PathLike[str] | None = None, log_p: float = 0.5, resume: bool = False, device: str | None = None, info: DistInfo | None = None,
                       on_step: Callable[[int, dict[str, Any]], None] | None = None, contrastive: float = 1.0,
                       item_loss: float = 1.0, dropout: float | None = None) -> tuple[TrainResult, Path | None]:
    """Finetune the model in ``init`` (a pretraining run or model folder) for retrieval;
    with ``query_log`` (see ``taomm.datasets.retrieval.read_query_log``), an item's query is
    one of its logged queries with probability ``log_p``. ``contrastive`` and ``item_loss``
    weigh the losses beyond the paper's matching (0: left out, their heads frozen).
    ``dropout`` replaces the model's hidden and attention dropout (None: its config's); the
    saved model's config records it."""
    if dropout is not None and not 0 <= dropout < 1:
        raise TaommError(f"dropout must be in [0, 1), not {dropout}")
    run = Path(run)
    info = info or setup(device)
    init_dir = resolve_model_dir(init)
    vocab_file = init_dir / VOCAB_NAME
    if not vocab_file.is_file():
        raise TaommError(f"{init_dir} has no {VOCAB_NAME} (save_pretrained with vocab_file=...)")
    tokenizer = TitleTokenizer(vocab_file)
    torch.manual_seed(train.seed)
    quiet = logging.getLogger("taomm.model.pretrained")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the retrieval heads are new and the MSM/MRM heads unused: expected
    try:
        overrides = {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
        model = InterBertForRetrieval.from_pretrained(init_dir, **overrides)
    finally:
        quiet.setLevel(level)
    if info.is_main and model.load_report.missing:
        log.info("new retrieval heads (not in %s): %s", init_dir, ", ".join(
            sorted({k.split(".")[0] for k in model.load_report.missing})))
    if item_loss and model.config.item_embedding_size != model.config.retrieval_embedding_size:
        raise TaommError("the item vector is trained against the text and image vectors: item_embedding_size "
                         f"({model.config.item_embedding_size}) must equal retrieval_embedding_size "
                         f"({model.config.retrieval_embedding_size})")
    store = open_store(store_path)
    if store.meta.feature_dim != model.config.region_feature_dim:
        raise TaommError(f"the store's features are {store.meta.feature_dim}-d, the model expects "
                         f"{model.config.region_feature_dim}")
    logged, log_info = _read_log(query_log, store, log_p)
    data = RetrievalData(store, tokenizer, training_ordinals(store, split), seed=train.seed, negatives=negatives,
                         hard_p=hard_p, max_text_tokens=model.config.max_text_tokens,
                         max_regions=model.config.max_regions, query_log=logged, log_p=log_p)
    task = RetrievalTask(data, model.config, contrastive, item_loss)
    _freeze_unused(model, task.loss_names)
    if info.is_main:
        run.mkdir(parents=True, exist_ok=True)
        options = {"store": str(Path(store_path).resolve()), "init": str(init_dir.resolve()),
                   "init_from": initialised_from(init), "split": split,
                   "items": len(data), "negatives": negatives, "hard_p": hard_p, "query_log": log_info,
                   "loss_weights": dict(zip(task.loss_names, task.loss_weights, strict=True)),
                   "dropout": {"hidden": model.config.hidden_dropout_prob,
                               "attention": model.config.attention_probs_dropout_prob},
                   "world_size": info.world_size, "train": asdict(train)}
        (run / RUN_OPTIONS).write_text(json.dumps(options, indent=2, ensure_ascii=False) + "\n", "utf-8")
    training = parallelize(RetrievalTraining(model, task.loss_names), info)
    result = Trainer(train, info).fit(training, task, run, resume=resume, on_step=on_step)
    out = None
    if not result.stopped and info.is_main:
        out = model.save_pretrained(run / MODEL_DIR, vocab_file=vocab_file)
    return result, out
