"""GLUE finetuning and evaluation (paper Table 6, appendix A.3), through the shared trainer.

Text alone goes through the interaction module and the text extractor; a linear head on the
text [CLS] classifies (cross-entropy) or, for STS-B, regresses (MSE). The paper's recipe:
inputs lower-cased and truncated to 128 tokens, lr 2e-5, 3 epochs. A run folder holds
``run.json``, ``metrics.jsonl``, ``tensorboard/``, ``checkpoints/``, ``model/`` and
``eval.json`` (the dev metrics).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from taomm.datasets.glue import (
    GlueDataset,
    GlueSplit,
    GlueTask,
    collate_glue,
    encode_texts,
    get_task,
    glue_metrics,
    read_split,
    task_dir,
)
from taomm.device import autocast, resolve_device
from taomm.errors import TaommError
from taomm.model import InterBertConfig, InterBertForSequenceClassification
from taomm.model.pretrained import VOCAB_NAME
from taomm.text.tokenizer import TitleTokenizer
from taomm.train.distributed import DistInfo, parallelize, setup
from taomm.train.finetune import resolve_model_dir
from taomm.train.flops import layer_macs
from taomm.train.pretrain import MODEL_DIR, RUN_OPTIONS
from taomm.train.trainer import TrainConfig, Trainer, TrainResult

log = logging.getLogger(__name__)
EVAL_FILE = "eval.json"


@dataclass
class GlueTraining:
    """The trainer's task: one loss, averaged over the labelled examples of the global batch."""

    dataset: GlueDataset
    config: InterBertConfig
    num_labels: int
    pad_id: int
    loss_weights: tuple[float, ...] = (1.0,)

    @property
    def loss_names(self) -> tuple[str, ...]:
        return ("mse",) if self.num_labels == 1 else ("cross_entropy",)

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return collate_glue(examples, self.pad_id)

    def counts(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.tensor([float(batch["labels"].shape[0])])

    def loss_sums(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        out = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"], reduction="sum")
        return out.loss.reshape(1)

    def flops(self, batch: dict[str, torch.Tensor]) -> float:
        cfg = self.config
        B, T = batch["input_ids"].shape
        macs = layer_macs(cfg, cfg.num_interaction_layers + cfg.num_extractor_layers, T) + cfg.hidden_size * self.num_labels
        return 2 * 3 * B * macs


@dataclass
class GlueSetup:
    """What a GLUE run starts from: the task, its data, the model with a new head, the tokenizer."""

    task: GlueTask
    data_dir: Path
    init_dir: Path
    model: InterBertForSequenceClassification
    tokenizer: TitleTokenizer
    train: GlueSplit
    max_length: int

    def steps_for(self, epochs: float, batch_size: int) -> int:
        """Optimizer steps of ``epochs`` passes over the training examples."""
        return max(1, math.ceil(epochs * len(self.train) / batch_size))


def load_glue(task_name: str, data: str | os.PathLike[str], init: str | os.PathLike[str], max_length: int = 128,
              seed: int = 0) -> GlueSetup:
    """Read the task's training file and load ``init`` (a model or run folder) with a new head."""
    task = get_task(task_name)
    folder = task_dir(task, data)
    init_dir = resolve_model_dir(init)
    if not (init_dir / VOCAB_NAME).is_file():
        raise TaommError(f"{init_dir} has no {VOCAB_NAME} (save_pretrained with vocab_file=...)")
    dev = folder / f"{task.dev_files[0]}.tsv"
    if not dev.is_file():  # found before training, not after
        raise TaommError(f"no {task.folder} dev file at {dev}")
    train = read_split(task, folder, "train")
    if len(train) == 0:
        raise TaommError(f"{train.path}: no usable rows ({train.skipped} skipped)")
    if train.skipped:
        log.warning("%s: %d malformed or unlabelled rows skipped", train.path, train.skipped)
    torch.manual_seed(seed)  # the new head's initial weights
    quiet = logging.getLogger("taomm.model.pretrained")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the head is new and the pretraining heads unused: expected
    try:
        model = InterBertForSequenceClassification.from_pretrained(init_dir, num_labels=task.num_labels)
    finally:
        quiet.setLevel(level)
    length = min(max_length, model.config.max_position_embeddings)
    if length < max_length:
        log.warning("max length %d cut to the model's %d positions", max_length, length)
    return GlueSetup(task, folder, init_dir, model, TitleTokenizer(init_dir / VOCAB_NAME), train, length)


def finetune_glue(prepared: GlueSetup, run: str | os.PathLike[str], *, train: TrainConfig, resume: bool = False,
                  info: DistInfo | None = None, on_step: Callable[[int, dict[str, Any]], None] | None = None,
                  ) -> tuple[TrainResult, Path | None, dict[str, Any] | None]:
    """Finetune, then (main process) save RUN/model and evaluate on dev into RUN/eval.json."""
    run = Path(run)
    info = info or setup()
    model, tokenizer = prepared.model, prepared.tokenizer
    # Text alone never reaches the image parts: frozen, so DDP does not wait for their gradients.
    for part in (model.interbert.region_embeddings, model.interbert.image_extractor):
        part.requires_grad_(False)
    ids = encode_texts(prepared.train.texts, tokenizer, prepared.max_length)
    data = GlueDataset(ids, prepared.train.labels, seed=train.seed)
    if info.is_main:
        run.mkdir(parents=True, exist_ok=True)
        options = {"task": prepared.task.name, "data": str(prepared.data_dir.resolve()),
                   "init": str(prepared.init_dir.resolve()), "train_examples": len(data),
                   "train_skipped": prepared.train.skipped, "max_length": prepared.max_length,
                   "world_size": info.world_size, "train": asdict(train)}
        (run / RUN_OPTIONS).write_text(json.dumps(options, indent=2, ensure_ascii=False) + "\n", "utf-8")
    task = GlueTraining(data, model.config, model.num_labels, tokenizer.pad_id)
    result = Trainer(train, info).fit(parallelize(model, info), task, run, resume=resume, on_step=on_step)
    if result.stopped or not info.is_main:
        return result, None, None
    out = model.save_pretrained(run / MODEL_DIR, vocab_file=tokenizer.vocab_file)
    scores = evaluate(model, prepared.task, prepared.data_dir, tokenizer, prepared.max_length, device=info.device,
                      bf16=train.bf16)
    scores["train_skipped"] = prepared.train.skipped
    (run / EVAL_FILE).write_text(json.dumps(scores, indent=2) + "\n", "utf-8")
    return result, out, scores


@torch.no_grad()
def predict(model: InterBertForSequenceClassification, input_ids: list[np.ndarray], pad_id: int,
            batch_size: int = 128, device: torch.device | str = "cpu", bf16: bool = True) -> np.ndarray:
    """(N,) predicted class ids, or predicted scores for regression."""
    device = torch.device(device)
    model.eval().to(device)
    out = []
    for start in range(0, len(input_ids), batch_size):
        batch = collate_glue([{"input_ids": x, "label": 0} for x in input_ids[start: start + batch_size]], pad_id)
        with autocast(device, bf16):
            logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device)).logits.float()
        out.append(logits[:, 0] if model.is_regression else logits.argmax(-1))
    return torch.cat(out).cpu().numpy() if out else np.zeros(0)


def evaluate(model: InterBertForSequenceClassification, task: GlueTask, folder: Path, tokenizer: TitleTokenizer,
             max_length: int = 128, batch_size: int = 128, device: torch.device | str = "cpu",
             bf16: bool = True) -> dict[str, Any]:
    """Metrics on each dev file of the task that exists (MNLI: matched, then mismatched);
    ``score`` is Table 6's metric on the first."""
    splits: dict[str, Any] = {}
    for name in task.dev_files:
        if name != task.dev_files[0] and not (folder / f"{name}.tsv").is_file():
            continue  # MNLI's mismatched dev set is optional
        dev = read_split(task, folder, name)
        if dev.skipped:
            log.warning("%s: %d malformed or unlabelled rows skipped", dev.path, dev.skipped)
        pred = predict(model, encode_texts(dev.texts, tokenizer, max_length), tokenizer.pad_id, batch_size,
                       device, bf16)
        splits[name] = {**glue_metrics(task, pred, dev.labels), "examples": len(dev), "skipped": dev.skipped}
    first = splits[task.dev_files[0]]
    return {"task": task.name, "metric": task.metric, "score": first[task.metric], "splits": splits}


def evaluate_glue(model_dir: str | os.PathLike[str], task_name: str, data: str | os.PathLike[str],
                  max_length: int = 128, batch_size: int = 128, device: str | None = None,
                  bf16: bool = True) -> dict[str, Any]:
    """Evaluate a finetuned model (a model folder, or a run folder with model/) on dev."""
    task = get_task(task_name)
    folder = resolve_model_dir(model_dir)
    model = InterBertForSequenceClassification.from_pretrained(folder)
    if model.load_report.missing:
        raise TaommError(f"{folder} has no GLUE head: finetune it with `taomm finetune-glue` first")
    if model.num_labels != task.num_labels:
        raise TaommError(f"{folder} has a {model.num_labels}-output head, {task.name} needs {task.num_labels}")
    device = resolve_device(device)
    length = min(max_length, model.config.max_position_embeddings)
    return evaluate(model, task, task_dir(task, data), TitleTokenizer(folder / VOCAB_NAME), length, batch_size,
                    device, bf16)
