"""InterBERT pretraining: MSM + MRM + ITM-hn on a feature store, through the shared trainer.

A run folder holds ``config.json`` (the model config, reused on ``--resume``), ``run.json``
(the options), ``metrics.jsonl``, ``tensorboard/``, ``checkpoints/step-N/`` and, at the end,
``model/`` written with ``save_pretrained`` (config + weights + vocab.txt). With a held-out
split, ``heldout.jsonl`` has the three tasks' accuracy on it every ``eval_every`` steps: where
training accuracy climbs and held-out accuracy falls, the model memorises its corpus.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taomm.datasets.pretraining import IGNORE, MaskingOptions, PretrainingData, collate_pretraining
from taomm.datasets.sharded import open_store
from taomm.device import autocast
from taomm.errors import OptionError, TaommError
from taomm.model import InterBertConfig, InterBertForPretraining
from taomm.model.pretrained import VOCAB_NAME
from taomm.text.tokenizer import TitleTokenizer
from taomm.train.distributed import DistInfo, parallelize, setup
from taomm.train.flops import layer_macs, pretraining_step_flops
from taomm.train.losses import contrastive_sums
from taomm.train.trainer import TrainConfig, Trainer, TrainResult

log = logging.getLogger(__name__)
RUN_CONFIG, RUN_OPTIONS, MODEL_DIR = "config.json", "run.json", "model"
HELDOUT_FILE = "heldout.jsonl"
MAX_LOGIT_SCALE = 100.0  # CLIP's cap on the learned temperature


@dataclass
class PretrainTask:
    """MSM, MRM and ITM over a PretrainingData, for the trainer; with ``itc_weight`` > 0 also
    an image-text contrastive loss between the text-alone vector of each image's own caption
    and the image-alone vector (beyond the paper: ALBEF's "align before fuse", which keeps a
    model trained from scratch out of the ITM plateau)."""

    dataset: PretrainingData
    config: InterBertConfig
    loss_weights: tuple[float, ...] = (1.0, 1.0, 1.0)
    itc_weight: float = 0.0

    def __post_init__(self) -> None:
        self.loss_names: tuple[str, ...] = ("msm", "mrm", "itm", "itc") if self.itc_weight else ("msm", "mrm", "itm")
        if self.itc_weight:
            self.loss_weights = (*tuple(self.loss_weights)[:3], self.itc_weight)

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return collate_pretraining(examples, pad_id=self.dataset.tokenizer.pad_id)

    def counts(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pairs = torch.tensor(batch["itm_labels"].shape[0], device=batch["itm_labels"].device)
        counts = [(batch["msm_labels"] != IGNORE).sum(), (batch["mrm_labels"] != IGNORE).sum(), pairs]
        return torch.stack(counts + [pairs] * (len(self.loss_names) - 3)).float()

    def loss_sums(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        itc = {"itc_input_ids": batch["itc_input_ids"], "itc_attention_mask": batch["itc_attention_mask"]} \
            if self.itc_weight else {}
        out = model(batch["input_ids"], batch["attention_mask"], batch["region_features"], batch["region_boxes"],
                    batch["region_mask"], msm_labels=batch["msm_labels"], mrm_labels=batch["mrm_labels"],
                    itm_labels=batch["itm_labels"], reduction="sum", **itc)
        sums = [out.msm_loss, out.mrm_loss, out.itm_loss]
        if self.itc_weight:
            scale = out.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
            sums.append(contrastive_sums(out.text_vectors, out.image_vectors, scale, batch.get("groups"))[0])
        return torch.stack(sums)

    def flops(self, batch: dict[str, torch.Tensor]) -> float:
        b, t = batch["input_ids"].shape
        r = batch["region_boxes"].shape[1]
        flops = pretraining_step_flops(self.config, b, t, r, int((batch["msm_labels"] != IGNORE).sum()),
                                       int((batch["mrm_labels"] != IGNORE).sum()))
        if self.itc_weight:  # the text-alone and image-alone passes
            cfg, layers = self.config, self.config.num_interaction_layers + self.config.num_extractor_layers
            flops += 2 * 3 * b * (layer_macs(cfg, layers, batch["itc_input_ids"].shape[1]) + layer_macs(cfg, layers, r + 1))
        return flops


def resolve_vocab(vocab: str | os.PathLike[str] | None, init_from: str | None, store_meta: Any) -> Path:
    """The vocabulary: ``vocab`` if given; else the BERT folder's ``vocab.txt``; else the one
    the store was built for (``taomm build-vocab``)."""
    if vocab is not None:
        return Path(vocab)
    if init_from is not None:
        folder = Path(init_from)
        if folder.is_dir():
            if not (folder / VOCAB_NAME).is_file():
                raise OptionError(f"{folder} has no {VOCAB_NAME}: pass {{vocab}}", "vocab")
            return folder / VOCAB_NAME
        try:  # a hub name, when there is network or a cache
            from huggingface_hub import hf_hub_download
            return Path(hf_hub_download(str(init_from), VOCAB_NAME))
        except Exception as exc:
            raise TaommError(f"cannot get {VOCAB_NAME} of {init_from}: {exc}") from None
    info = store_meta.tokenizer or {}
    if info.get("vocab_file") and Path(info["vocab_file"]).is_file():
        return Path(info["vocab_file"])
    raise OptionError("no vocabulary: run `taomm build-vocab` on the store, or pass {vocab} or {init_from}",
                      "vocab", "init_from")


def training_ordinals(store: Any, split: str | None) -> np.ndarray:
    """The split's items, or every item when the store has no splits (and none was asked for).
    Several splits join with ``+`` (``train+val``: pretraining over every listing outside
    the test split)."""
    if split is None:
        split = "train" if "train" in store.split_names() else None
    if split is None:
        return np.arange(len(store))
    return np.unique(np.concatenate([store.split(name) for name in split.split("+")]))


def pretrain(store_path: str | os.PathLike[str], run: str | os.PathLike[str], *, model_config: InterBertConfig,
             train: TrainConfig, masking: MaskingOptions | None = None, init_from: str | None = None,
             vocab: str | os.PathLike[str] | None = None, split: str | None = None, resume: bool = False,
             loss_weights: tuple[float, float, float] = (1.0, 1.0, 1.0), itc_weight: float = 0.0,
             device: str | None = None,
             info: DistInfo | None = None, held_out: HeldOut | None = None,
             on_step: Callable[[int, dict[str, Any]], None] | None = None) -> tuple[TrainResult, Path | None]:
    """Pretrain (or resume) into ``run``; returns the trainer's result and the saved model
    folder (None when stopped early by SIGTERM). ``held_out``: the tasks' accuracy on another
    split, every ``held_out.every`` steps, into ``run/heldout.jsonl``."""
    run = Path(run)
    info = info or setup(device)
    masking = masking or MaskingOptions()
    store = open_store(store_path)
    meta = store.meta
    vocab_file = resolve_vocab(vocab, init_from, meta)
    tokenizer = TitleTokenizer(vocab_file)
    saved = run / RUN_CONFIG
    if resume and saved.is_file():
        config = InterBertConfig.from_json_file(saved)  # the run's own sizes, whatever the flags say
    else:
        config = store_model_config(model_config, len(tokenizer), meta)
    if len(tokenizer) != config.vocab_size:
        raise TaommError(f"the vocabulary {vocab_file} has {len(tokenizer)} tokens, the model {config.vocab_size}")
    torch.manual_seed(train.seed)
    if init_from is not None and not resume:
        model = InterBertForPretraining.from_bert(init_from, config)
        config = model.config
    else:
        model = InterBertForPretraining(config, loss_weights=loss_weights)
    if not itc_weight:  # unused heads: frozen, so that DDP does not wait for their gradients
        for p in model.contrastive.parameters():
            p.requires_grad_(False)
    config.max_text_tokens = min(masking.max_text_tokens, config.max_text_tokens)  # saved: search reads what trained
    masking = MaskingOptions(**{**asdict(masking), "max_regions": min(masking.max_regions, config.max_regions),
                                "max_text_tokens": config.max_text_tokens})
    data = PretrainingData(store, tokenizer, training_ordinals(store, split), seed=train.seed, options=masking)
    if held_out is not None and held_out.every > 0:
        on_step = held_out.hook(model, store, tokenizer, data.ordinals, masking, run, train, on_step)
    if info.is_main:
        run.mkdir(parents=True, exist_ok=True)
        config.to_json_file(saved)
        options = {"store": str(Path(store_path).resolve()), "vocab": str(vocab_file.resolve()),
                   "init_from": init_from, "split": split, "items": len(data), "world_size": info.world_size,
                   "train": asdict(train), "masking": asdict(masking), "loss_weights": list(loss_weights),
                   "itc_weight": itc_weight, "held_out": asdict(held_out) if held_out else None}
        (run / RUN_OPTIONS).write_text(json.dumps(options, indent=2, ensure_ascii=False) + "\n", "utf-8")
    task = PretrainTask(data, config, loss_weights, itc_weight)
    result = Trainer(train, info).fit(parallelize(model, info), task, run, resume=resume, on_step=on_step)
    out = None
    if not result.stopped and info.is_main:
        out = model.save_pretrained(run / MODEL_DIR, vocab_file=vocab_file)
    return result, out


def store_model_config(model_config: InterBertConfig, vocab_size: int, store_meta: Any) -> InterBertConfig:
    """``model_config`` sized for a vocabulary and a store (its region classes and feature size)."""
    return InterBertConfig.from_dict({**model_config.to_dict(), "vocab_size": vocab_size,
                                      "num_region_classes": len(store_meta.classes),
                                      "region_feature_dim": store_meta.feature_dim})


def save_initial_weights(store_path: str | os.PathLike[str], out: str | os.PathLike[str], *,
                         model_config: InterBertConfig, seed: int = 0,
                         vocab: str | os.PathLike[str] | None = None) -> Path:
    """The random weights :func:`pretrain` from scratch starts from with ``seed``, saved as a
    model folder without a step taken: what "finetuned from random weights (same steps)"
    starts from, so that the only difference from the pretrained model is the pretraining."""
    with open_store(store_path) as store:
        meta = store.meta
    vocab_file = resolve_vocab(vocab, None, meta)
    config = store_model_config(model_config, len(TitleTokenizer(vocab_file)), meta)
    config.max_text_tokens = min(MaskingOptions().max_text_tokens, config.max_text_tokens)  # as pretrain saves it
    torch.manual_seed(seed)
    return InterBertForPretraining(config).save_pretrained(out, vocab_file=vocab_file)


@dataclass
class HeldOut:
    """Held-out task accuracy during pretraining: ``items`` of ``split`` (its first, in store
    order), evaluated every ``every`` steps and at the last step with a fixed masking seed."""

    split: str
    every: int
    items: int = 512

    def hook(self, model: InterBertForPretraining, store: Any, tokenizer: TitleTokenizer, training: np.ndarray,
             masking: MaskingOptions, run: Path, train: TrainConfig,
             on_step: Callable[[int, dict[str, Any]], None] | None) -> Callable[[int, dict[str, Any]], None]:
        """``on_step`` that also writes a line of :func:`evaluate_pretraining` to ``run/heldout.jsonl``
        when due (on the main process; the evaluation draws from no global RNG, so the training
        batches and a resume stay as they were)."""
        ordinals = training_ordinals(store, self.split)
        if np.intersect1d(ordinals, training).size:
            raise OptionError(f"the held-out split {self.split!r} overlaps the training split: choose another "
                              "{eval_split}", "eval_split")
        if not len(ordinals):
            raise OptionError(f"the held-out split {self.split!r} has no items", "eval_split")
        ordinals = ordinals[:self.items]

        def step(number: int, metrics: dict[str, Any]) -> None:
            if number % self.every == 0 or number == train.max_steps:
                found = evaluate_pretraining(model, store, tokenizer, ordinals, masking, bf16=train.bf16)
                model.train()
                with open(run / HELDOUT_FILE, "a", encoding="utf-8") as out:
                    out.write(json.dumps({"step": number, **found}) + "\n")
                log.info("held-out %s at step %d: MSM %.3f, MRM %.3f, ITM %.3f", self.split, number,
                         found["msm_acc"], found["mrm_acc"], found["itm_acc"])
            if on_step is not None:
                on_step(number, metrics)

        return step


@torch.no_grad()
def evaluate_pretraining(model: InterBertForPretraining, store: Any, tokenizer: TitleTokenizer,
                         ordinals: np.ndarray, options: MaskingOptions | None = None, seed: int = 1234,
                         batch_size: int = 64, bf16: bool = True) -> dict[str, float]:
    """Held-out accuracy of the three tasks on ``ordinals`` (one pass, a fixed seed): MSM
    top-1 over masked tokens, MRM top-1 over masked regions of known class, ITM accuracy."""
    data = PretrainingData(store, tokenizer, ordinals, seed=seed, options=options)
    task = PretrainTask(data, model.config)
    device = next(model.parameters()).device
    model.eval()
    hits = np.zeros(3)
    totals = np.zeros(3)
    for start in range(0, len(data), batch_size):
        batch = task.collate([data[p] for p in range(start, min(start + batch_size, len(data)))])
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, bf16):
            out = model(batch["input_ids"], batch["attention_mask"], batch["region_features"], batch["region_boxes"],
                        batch["region_mask"], msm_labels=batch["msm_labels"], mrm_labels=batch["mrm_labels"])
        for j, (logits, labels) in enumerate(((out.msm_logits, batch["msm_labels"]),
                                              (out.mrm_logits, batch["mrm_labels"]))):
            target = labels[labels != IGNORE]
            hits[j] += int((logits.argmax(-1) == target).sum())
            totals[j] += len(target)
        hits[2] += int(((out.itm_logits > 0).long() == batch["itm_labels"]).sum())
        totals[2] += len(batch["itm_labels"])
    acc = hits / np.maximum(totals, 1)
    return {"msm_acc": float(acc[0]), "mrm_acc": float(acc[1]), "itm_acc": float(acc[2]),
            "msm_tokens": int(totals[0]), "mrm_regions": int(totals[1]), "pairs": int(totals[2])}
