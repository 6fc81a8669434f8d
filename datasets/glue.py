"""GLUE: the 8 tasks of the paper's Table 6, their TSV files and their metrics.

Files are read exactly as distributed in ``glue_data/<Folder>/``: tab-separated, no
quoting (GLUE text holds unbalanced quote characters), columns found by their header name;
CoLA alone has no header (source, label, original label or ``*``, sentence). Rows with a
wrong field count or without a valid label are skipped and counted, never fatal.

Metrics: accuracy, binary F1 (positive class 1) and Matthews correlation with numpy (so
scikit-learn stays a test-only dependency), Pearson and Spearman (average ranks for ties)
with scipy.stats; a constant side gives 0, not NaN. Table 6 reports F1 for QQP and
MRPC, Spearman for STS-B and accuracy for the rest; its CoLA column (BERT-base 56.7) is on
the Matthews scale that GLUE uses for CoLA, so CoLA's metric here is Matthews.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from taomm.errors import TaommError
from taomm.text.tokenizer import TitleTokenizer


@dataclass(frozen=True)
class GlueTask:
    name: str  # the CLI's name: sst2
    folder: str  # glue_data/<folder>: SST-2
    text_columns: tuple[str, ...]  # one sentence, or a pair
    label_column: str
    labels: tuple[str, ...] | None  # label strings as written, index = class id; None: regression
    metric: str  # Table 6's metric: accuracy, f1, matthews or spearman
    dev_files: tuple[str, ...] = ("dev",)  # evaluated in turn; the first one gives the score
    columns: tuple[str, ...] | None = None  # column names of a file without a header

    @property
    def num_labels(self) -> int:
        """Outputs of the head: the classes, or 1 for regression."""
        return 1 if self.labels is None else len(self.labels)


_ENTAILMENT = ("entailment", "not_entailment")
TASKS: dict[str, GlueTask] = {t.name: t for t in (
    GlueTask("qnli", "QNLI", ("question", "sentence"), "label", _ENTAILMENT, "accuracy"),
    GlueTask("cola", "CoLA", ("sentence",), "label", ("0", "1"), "matthews",
             columns=("source", "label", "original_label", "sentence")),
    GlueTask("sst2", "SST-2", ("sentence",), "label", ("0", "1"), "accuracy"),
    GlueTask("stsb", "STS-B", ("sentence1", "sentence2"), "score", None, "spearman"),
    GlueTask("rte", "RTE", ("sentence1", "sentence2"), "label", _ENTAILMENT, "accuracy"),
    GlueTask("mnli", "MNLI", ("sentence1", "sentence2"), "gold_label", ("contradiction", "entailment", "neutral"),
             "accuracy", dev_files=("dev_matched", "dev_mismatched")),
    GlueTask("qqp", "QQP", ("question1", "question2"), "is_duplicate", ("0", "1"), "f1"),
    GlueTask("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", ("0", "1"), "f1"),
)}


def get_task(name: str) -> GlueTask:
    key = name.lower().replace("-", "")
    if key not in TASKS:
        raise TaommError(f"unknown GLUE task {name!r} (choose from {', '.join(TASKS)})")
    return TASKS[key]


def task_dir(task: GlueTask, data: str | os.PathLike[str]) -> Path:
    """The task's folder: ``data`` itself, or ``data/<Folder>`` (a ``glue_data`` folder)."""
    data = Path(data)
    for folder in (data / task.folder, data):
        if (folder / "train.tsv").is_file():
            return folder
    raise TaommError(f"no {task.folder} data at {data} (expected {data / 'train.tsv'} or "
                     f"{data / task.folder / 'train.tsv'})")


@dataclass
class GlueSplit:
    path: Path
    texts: list[tuple[str, ...]]  # per example: (sentence,) or (sentence_a, sentence_b)
    labels: np.ndarray  # (N,) int64 class ids, or float32 scores for regression
    skipped: int  # rows with a wrong field count or no valid label

    def __len__(self) -> int:
        return len(self.texts)


def read_split(task: GlueTask, folder: str | os.PathLike[str], split: str = "train") -> GlueSplit:
    """Read ``folder/<split>.tsv`` (split: train, dev, dev_matched, ...)."""
    path = Path(folder) / f"{split}.tsv"
    if not path.is_file():
        raise TaommError(f"no {task.folder} {split} file at {path}")
    texts: list[tuple[str, ...]] = []
    labels: list[Any] = []
    skipped = 0
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        names = list(task.columns) if task.columns else next(rows, [])
        index = {name: i for i, name in enumerate(names)}
        missing = [c for c in (*task.text_columns, task.label_column) if c not in index]
        if missing:
            raise TaommError(f"{path} has no column {missing[0]!r}: not a {task.folder} file")
        text_at = [index[c] for c in task.text_columns]
        for row in rows:
            label = _label(task, row[index[task.label_column]]) if len(row) == len(names) else None
            if label is None:
                skipped += 1
                continue
            texts.append(tuple(row[i] for i in text_at))
            labels.append(label)
    dtype = np.float32 if task.labels is None else np.int64
    return GlueSplit(path, texts, np.asarray(labels, dtype=dtype), skipped)


def _label(task: GlueTask, value: str) -> int | float | None:
    value = value.strip()
    if task.labels is not None:
        return task.labels.index(value) if value in task.labels else None
    try:
        score = float(value)
    except ValueError:
        return None
    return score if math.isfinite(score) else None


# --- metrics -----------------------------------------------------------------------------

def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(np.mean(np.asarray(pred) == np.asarray(gold))) if len(gold) else 0.0


def f1_binary(pred: np.ndarray, gold: np.ndarray) -> float:
    """F1 of the positive class 1; 0 when there is neither a predicted nor a true positive."""
    pred, gold = np.asarray(pred) == 1, np.asarray(gold) == 1
    tp, fp, fn = np.sum(pred & gold), np.sum(pred & ~gold), np.sum(~pred & gold)
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0


def matthews(pred: np.ndarray, gold: np.ndarray) -> float:
    """Matthews correlation (multi-class form, from the confusion matrix); 0 when undefined."""
    classes, both = np.unique(np.concatenate([gold, pred]), return_inverse=True)
    g, p = both[: len(gold)], both[len(gold):]
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    np.add.at(confusion, (g, p), 1)
    t, q, c, s = confusion.sum(1), confusion.sum(0), np.trace(confusion), confusion.sum()
    den = math.sqrt((s * s - q @ q) * (s * s - t @ t))
    return float((c * s - t @ q) / den) if den else 0.0


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is constant (or has fewer than 2 values)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or _constant(x) or _constant(y):
        return 0.0
    return float(stats.pearsonr(x, y).statistic)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of their ranks."""
    return stats.rankdata(x, method="average")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman correlation (average ranks for ties); 0 when either side is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or _constant(x) or _constant(y):
        return 0.0
    return float(stats.spearmanr(x, y).statistic)


def _constant(x: np.ndarray) -> bool:
    return bool(np.all(x == x[0]))


def glue_metrics(task: GlueTask, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Table 6's metric of the task, plus accuracy for classification (Pearson for STS-B)."""
    if task.labels is None:
        return {"spearman": spearman(predictions, labels), "pearson": pearson(predictions, labels)}
    scores = {"accuracy": accuracy(predictions, labels)}
    if task.metric == "f1":
        scores["f1"] = f1_binary(predictions, labels)
    elif task.metric == "matthews":
        scores["matthews"] = matthews(predictions, labels)
    return scores


# --- model inputs ------------------------------------------------------------------------

def encode_texts(texts: Sequence[tuple[str, ...]], tokenizer: TitleTokenizer, max_length: int) -> list[np.ndarray]:
    """``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` token ids (lower-cased WordPiece, as the
    paper), the longer sentence truncated first to ``max_length`` tokens in all."""
    # the fast tokenizer's own threads must not run across DataLoader worker forks
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not texts:
        return []
    firsts = [t[0] for t in texts]
    seconds = [t[1] for t in texts] if len(texts[0]) > 1 else None
    ids = tokenizer.hf(firsts, seconds, truncation=True, max_length=max_length)["input_ids"]
    return [np.asarray(row, dtype=np.int64) for row in ids]


class GlueDataset(torch.utils.data.Dataset):
    """Training examples by global position (what the trainer's sampler asks for): position
    ``p`` is example ``order_e[p % N]`` of epoch ``e = p // N``, each epoch its own
    permutation drawn from ``(seed, e)``, so a resumed run reads the same batches."""

    def __init__(self, input_ids: list[np.ndarray], labels: np.ndarray, seed: int = 0) -> None:
        if not input_ids:
            raise TaommError("no training examples")
        self.input_ids, self.labels, self.seed = input_ids, labels, seed
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, position: int) -> dict[str, Any]:
        epoch, index = divmod(position, len(self.input_ids))
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng((self.seed, epoch)).permutation(len(self.input_ids)))
        i = int(self._order[1][index])
        return {"input_ids": self.input_ids[i], "label": self.labels[i]}


def collate_glue(examples: Sequence[dict[str, Any]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """input_ids and attention_mask (B, T) padded to the longest; labels (B,)."""
    T = max(len(e["input_ids"]) for e in examples)
    input_ids = np.full((len(examples), T), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(examples), T), dtype=bool)
    for i, e in enumerate(examples):
        input_ids[i, : len(e["input_ids"])] = e["input_ids"]
        attention_mask[i, : len(e["input_ids"])] = True
    labels = np.asarray([e["label"] for e in examples])
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask),
            "labels": torch.from_numpy(labels)}
