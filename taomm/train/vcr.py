"""VCR finetuning (paper section 3.4 and appendix), through the shared trainer.

One model, two losses per batch of B questions: ``qa`` (Q->A: the question with each of
its 4 answers) and ``qar`` (QA->R: the question and the right answer with each of the 4
rationales), each a 4-way cross-entropy over the choices' ITM scores; ``subtask`` trains
one of them alone. The paper's recipe: lr 2e-5, batch 32, 5 epochs, and an exponential
moving average of the weights (decay 0.9999) as the final model: ``ema`` keeps it in fp32,
updated after every optimizer step, saved with each checkpoint (exact resume), and it is
the model evaluated and saved.

Evaluation (``RUN/eval.json``): Q->A accuracy, QA->R accuracy (rationales given the right
answer) and Q->AR accuracy, the share of questions whose answer *and* rationale are both
right. A run folder holds ``run.json``, ``metrics.jsonl``, ``tensorboard/``,
``checkpoints/``, ``model/`` and ``eval.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from taomm.datasets.sharded import open_store
from taomm.datasets.vcr import (
    SUBTASKS,
    VcrExamples,
    VcrSplit,
    annotations_file,
    collate_vcr,
    load_split,
)
from taomm.device import autocast
from taomm.errors import OptionError, TaommError
from taomm.model import InterBertConfig
from taomm.model.pretrained import VOCAB_NAME
from taomm.model.vcr import InterBertForMultipleChoice
from taomm.text.tokenizer import TitleTokenizer
from taomm.train.distributed import DistInfo, parallelize, setup
from taomm.train.finetune import resolve_model_dir
from taomm.train.flops import layer_macs
from taomm.train.pretrain import MODEL_DIR, RUN_OPTIONS
from taomm.train.trainer import TrainConfig, Trainer, TrainResult

log = logging.getLogger(__name__)
EVAL_FILE = "eval.json"
SUBTASK_CHOICES = {"qa": ("qa",), "qar": ("qar",), "both": SUBTASKS}
MAX_TEXT_TOKENS = 128  # [CLS] question answer [SEP] rationale [SEP]; longer pairs lose the longer part's end


class ExponentialMovingAverage:
    """``shadow = decay * shadow + (1 - decay) * weight`` after each step, per parameter, in fp32."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise TaommError(f"the EMA decay must be within (0, 1), not {decay}")
        self.decay = decay
        self.shadow = {name: p.detach().float().clone() for name, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            self.shadow[name].lerp_(p.detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            p.copy_(self.shadow[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.shadow):
            raise TaommError("the checkpoint's moving average does not fit the model")
        for name, tensor in state.items():
            self.shadow[name].copy_(tensor)


class VcrTraining(nn.Module):
    """The choice logits (B, C) of each subtask in a batch (DDP wraps this module)."""

    def __init__(self, model: InterBertForMultipleChoice, subtasks: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.subtasks = model, subtasks

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: self.model(batch[f"{name}_input_ids"], batch[f"{name}_attention_mask"],
                                 batch["region_features"], batch["region_boxes"], batch["region_mask"]).logits
                for name in self.subtasks}


@dataclass
class VcrTask:
    dataset: VcrExamples
    config: InterBertConfig
    ema: ExponentialMovingAverage | None = None

    def __post_init__(self) -> None:
        self.loss_names = self.dataset.subtasks
        self.loss_weights = (1.0,) * len(self.loss_names)

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return collate_vcr(examples, pad_id=self.dataset.tokenizer.pad_id)

    def counts(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.full((len(self.loss_names),), float(batch["region_features"].shape[0]))

    def loss_sums(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        logits = model(batch)
        return torch.stack([F.cross_entropy(logits[name].float(), batch[f"{name}_labels"], reduction="sum")
                            for name in self.loss_names])

    def flops(self, batch: dict[str, torch.Tensor]) -> float:
        cfg = self.config
        B, R = batch["region_features"].shape[:2]
        total = 0.0
        for name in self.loss_names:
            C, T = batch[f"{name}_input_ids"].shape[1:]
            pair = (layer_macs(cfg, cfg.num_interaction_layers, R + 1 + T)
                    + layer_macs(cfg, cfg.num_extractor_layers, R + 1) + layer_macs(cfg, cfg.num_extractor_layers, T)
                    + (R + 1) * cfg.region_feature_dim * cfg.hidden_size)
            total += 2 * 3 * B * C * pair
        return total

    def after_step(self, model: nn.Module) -> None:
        if self.ema is not None:
            self.ema.update(model)

    def extra_state(self) -> dict[str, Any]:
        return {"ema": self.ema.state_dict()} if self.ema is not None else {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if self.ema is not None:
            if "ema" not in state:
                raise OptionError("{ema}: the checkpoint has no moving average (the run was started without "
                                  "{ema})", "ema")
            self.ema.load_state_dict(state["ema"])


def vcr_accuracy(qa_logits: np.ndarray | None, qar_logits: np.ndarray | None, answer_labels: np.ndarray,
                 rationale_labels: np.ndarray) -> dict[str, float]:
    """Q->A, QA->R and (with both) Q->AR accuracy: both right for the same question."""
    out: dict[str, float] = {}
    qa_right = qar_right = None
    if qa_logits is not None:
        qa_right = np.asarray(qa_logits).argmax(1) == np.asarray(answer_labels)
        out["Q->A"] = float(qa_right.mean())
    if qar_logits is not None:
        qar_right = np.asarray(qar_logits).argmax(1) == np.asarray(rationale_labels)
        out["QA->R"] = float(qar_right.mean())
    if qa_right is not None and qar_right is not None:
        out["Q->AR"] = float((qa_right & qar_right).mean())
    return out


@torch.no_grad()
def evaluate_vcr(model: InterBertForMultipleChoice, examples: VcrExamples, batch_size: int = 32,
                 device: str | torch.device = "cpu", bf16: bool = False, workers: int = 0) -> dict[str, Any]:
    """Accuracies of ``model`` on the questions of ``examples`` (built with shuffle=False)."""
    training = VcrTraining(model, examples.subtasks).to(device).eval()
    loader = DataLoader(examples, batch_size=batch_size, num_workers=workers,
                        collate_fn=partial(collate_vcr, pad_id=examples.tokenizer.pad_id))
    logits: dict[str, list[np.ndarray]] = {name: [] for name in examples.subtasks}
    indices = []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, bf16):
            out = training(batch)
        for name, value in out.items():
            logits[name].append(value.float().cpu().numpy())
        indices.append(batch["index"].cpu().numpy())
    questions = [examples.questions[i] for i in np.concatenate(indices)]
    scores = {name: np.concatenate(parts) for name, parts in logits.items()}
    return {**vcr_accuracy(scores.get("qa"), scores.get("qar"), np.array([q.answer_label for q in questions]),
                           np.array([q.rationale_label for q in questions])), "questions": len(questions)}


def load_vcr_split(store: Any, split: str, annotations: str | os.PathLike[str] | None = None) -> VcrSplit:
    """The labelled questions of ``split`` whose image is in ``store`` (see :func:`load_split`)."""
    return load_split(store, annotations_file(store.path, split, annotations))


def epoch_steps(store_path: str | os.PathLike[str], epochs: float, batch_size: int,
                annotations: str | os.PathLike[str] | None = None) -> int:
    """Optimizer steps of ``epochs`` passes over the training questions."""
    with open_store(store_path) as store:
        questions = len(load_vcr_split(store, "train", annotations).questions)
    return max(1, math.ceil(epochs * questions / batch_size))


def finetune_vcr(store_path: str | os.PathLike[str], init: str | os.PathLike[str], run: str | os.PathLike[str], *,
                 train: TrainConfig, subtask: str = "both", ema: float | None = None,
                 annotations: str | os.PathLike[str] | None = None, eval_split: str | None = "val",
                 resume: bool = False, device: str | None = None, info: DistInfo | None = None,
                 on_step: Callable[[int, dict[str, Any]], None] | None = None,
                 ) -> tuple[TrainResult, Path | None, dict[str, Any] | None]:
    """Finetune the model in ``init`` on VCR's train split (annotations from the store, or the
    ``annotations`` folder); evaluate on ``eval_split``. Returns the training result, the
    saved model folder and the evaluation (on the main process)."""
    if subtask not in SUBTASK_CHOICES:
        raise OptionError(f"{{subtask}} must be one of {', '.join(SUBTASK_CHOICES)}, not {subtask!r}", "subtask")
    run = Path(run)
    info = info or setup(device)
    init_dir = resolve_model_dir(init)
    model = _load_model(init_dir)
    tokenizer = TitleTokenizer(init_dir / VOCAB_NAME)
    subtasks = SUBTASK_CHOICES[subtask]
    limits = {"max_text_tokens": min(MAX_TEXT_TOKENS, model.config.max_position_embeddings),
              "max_regions": model.config.max_regions}
    with open_store(store_path) as store:
        if store.meta.feature_dim != model.config.region_feature_dim:
            raise TaommError(f"the store's features are {store.meta.feature_dim}-d, the model expects "
                             f"{model.config.region_feature_dim}")
        split = load_vcr_split(store, "train", annotations)
        # a missing evaluation file fails now, not after training
        eval_path = annotations_file(store.path, eval_split, annotations) if eval_split else None
        data = VcrExamples(split.questions, store, tokenizer, subtasks, seed=train.seed, **limits)
        training = VcrTraining(model, subtasks).to(info.device)
        average = ExponentialMovingAverage(training, ema) if ema is not None else None
        if ema is not None and ema ** train.max_steps > 0.05:
            log.warning("ema %s over %d steps: the average still holds %.0f%% of the initial weights", ema,
                        train.max_steps, 100 * ema ** train.max_steps)
        if info.is_main:
            run.mkdir(parents=True, exist_ok=True)
            options = {"store": str(Path(store_path).resolve()), "init": str(init_dir.resolve()),
                       "subtask": subtask, "ema": ema, "questions": len(split.questions), "skipped": split.skipped,
                       "world_size": info.world_size, "train": asdict(train)}
            (run / RUN_OPTIONS).write_text(json.dumps(options, indent=2, ensure_ascii=False) + "\n", "utf-8")
        result = Trainer(train, info).fit(parallelize(training, info), VcrTask(data, model.config, average), run,
                                          resume=resume, on_step=on_step)
        if result.stopped or not info.is_main:
            return result, None, None
        if average is not None:
            average.copy_to(training)  # the moving average is the final model
        out = model.save_pretrained(run / MODEL_DIR, vocab_file=init_dir / VOCAB_NAME)
        if eval_path is None:
            return result, out, None
        held_out = load_split(store, eval_path)
        examples = VcrExamples(held_out.questions, store, tokenizer, subtasks, shuffle=False, **limits)
        metrics = {"split": eval_split, **evaluate_vcr(model, examples, device=info.device, bf16=train.bf16),
                   "skipped": held_out.skipped, "ema": ema, "model": str(out.resolve())}
    (run / EVAL_FILE).write_text(json.dumps(metrics, indent=2) + "\n", "utf-8")
    return result, out, metrics


def _load_model(init_dir: Path) -> InterBertForMultipleChoice:
    if not (init_dir / VOCAB_NAME).is_file():
        raise TaommError(f"{init_dir} has no {VOCAB_NAME} (save_pretrained with vocab_file=...)")
    quiet = logging.getLogger("taomm.model.pretrained")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # a pretrained model's heads other than ITM are unused: expected
    try:
        return InterBertForMultipleChoice.from_pretrained(init_dir)
    finally:
        quiet.setLevel(level)
