"""VCR (Zellers et al., CVPR 2019) as distributed, for InterBERT finetuning (paper section 3.4).

Three modules, one per role: :mod:`taomm.datasets.vcr_format` reads the annotation files
and renders their tagged texts; :mod:`taomm.datasets.vcr_prepare` builds the store of the
images' annotated regions (:func:`prepare_vcr`); this one turns a split's questions and that
store into examples and batches. The names of the other two are re-exported here.

Examples: Q->A pairs the question with each answer; QA->R pairs the question and the right
answer with each rationale.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from taomm.datasets.prepare import SPLITS
from taomm.datasets.pretraining import normalized_boxes
from taomm.datasets.vcr_format import (
    IMAGES_DIR,
    MAX_LINE_CHARS,
    NUM_CHOICES,
    PERSON_NAMES,
    STORE_DIR,
    BadLine,
    Rejected,
    Text,
    VcrAnnotations,
    VcrQuestion,
    check_relative,
    object_words,
    parse_question,
    read_vcr,
    render,
)
from taomm.datasets.vcr_prepare import (
    MAX_METADATA_BYTES,
    TAXONOMY,
    BoxFeatures,
    image_regions,
    prepare_vcr,
)
from taomm.errors import OptionError, TaommError
from taomm.text.tokenizer import TitleTokenizer

__all__ = [
    "IMAGES_DIR", "MAX_LINE_CHARS", "MAX_METADATA_BYTES", "NUM_CHOICES", "PERSON_NAMES", "SPLITS", "STORE_DIR",
    "SUBTASKS", "TAXONOMY", "BadLine", "BoxFeatures", "Rejected", "Text", "VcrAnnotations", "VcrExamples",
    "VcrQuestion", "VcrSplit", "annotations_file", "check_relative", "collate_vcr", "encode_pair", "image_regions",
    "load_split", "object_words", "parse_question", "prepare_vcr", "read_vcr", "render",
]

SUBTASKS = ("qa", "qar")  # Q->A and QA->R


# --- splits --------------------------------------------------------------------------------

def annotations_file(store: str | os.PathLike[str], split: str,
                     annotations: str | os.PathLike[str] | None = None) -> Path:
    """``<annotations>/<split>.jsonl``, by default the copy :func:`prepare_vcr` keeps in the store."""
    path = (Path(annotations) if annotations else Path(store) / STORE_DIR) / f"{split}.jsonl"
    if not path.is_file():
        where = "{annotations}" if annotations else "the store (preparing it with {format=vcr} copies them there)"
        raise OptionError(f"no VCR annotations {path}: pass the folder of VCR's jsonl files as {where}",
                          "annotations", "format=vcr")
    return path


@dataclass
class VcrSplit:
    """The usable questions of a split (labelled, image in the store) and why others were left out."""

    questions: list[VcrQuestion]
    skipped: dict[str, int]


def load_split(store: Any, path: str | os.PathLike[str], labelled: bool = True) -> VcrSplit:
    """Questions of ``path`` whose image is in ``store`` (and, with ``labelled``, that have labels)."""
    annotations = read_vcr(path)
    skipped = Counter(annotations.reasons)
    kept = []
    for q in annotations.questions:
        if labelled and not q.labelled:
            skipped["unlabelled"] += 1
        elif q.img_fn not in store:
            skipped["image_not_in_store"] += 1
        else:
            kept.append(q)
    return VcrSplit(kept, dict(skipped))


# --- examples and batches ----------------------------------------------------------------

def encode_pair(tokenizer: TitleTokenizer, context: list[int], choice: list[int], max_tokens: int) -> np.ndarray:
    """[CLS] context [SEP] choice [SEP], the longer part cut first (BERT's pair truncation)."""
    context, choice = list(context), list(choice)
    while len(context) + len(choice) > max_tokens - 3:
        (context if len(context) > len(choice) else choice).pop()
    return np.asarray([tokenizer.cls_id, *context, tokenizer.sep_id, *choice, tokenizer.sep_id], dtype=np.int64)


class VcrExamples(Dataset):
    """Questions with both subtasks' choices and the image's regions, by global position.

    Position ``p`` is question ``order_e[p % N]`` of epoch ``e = p // N`` (a permutation
    drawn from ``(seed, e)``; the identity with ``shuffle=False``), so a resumed run reads
    the same batches."""

    def __init__(self, questions: Sequence[VcrQuestion], store: Any, tokenizer: TitleTokenizer,
                 subtasks: Sequence[str] = SUBTASKS, seed: int = 0, shuffle: bool = True,
                 max_text_tokens: int = 128, max_regions: int = 100) -> None:
        if not questions:
            raise TaommError("no VCR question to use (see the skipped counts)")
        if unknown := set(subtasks) - set(SUBTASKS):
            raise TaommError(f"unknown VCR subtask {sorted(unknown)} (choose from {', '.join(SUBTASKS)})")
        if any(not q.labelled for q in questions):
            raise TaommError("VCR training and evaluation need labelled questions")
        self.questions, self.store, self.tokenizer = list(questions), store, tokenizer
        self.subtasks = tuple(s for s in SUBTASKS if s in subtasks)
        self.seed, self.shuffle = seed, shuffle
        self.max_text_tokens, self.max_regions = max_text_tokens, max_regions
        self._order: tuple[int, np.ndarray] | None = None
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def __len__(self) -> int:
        return len(self.questions)

    def index_at(self, position: int) -> int:
        epoch, index = divmod(position, len(self.questions))
        if not self.shuffle:
            return index
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng((self.seed, epoch)).permutation(len(self.questions)))
        return int(self._order[1][index])

    def __getitem__(self, position: int) -> dict[str, Any]:
        index = self.index_at(position)
        q = self.questions[index]
        item = self.store.get(q.img_fn)
        n = min(item.num_regions, self.max_regions)
        out: dict[str, Any] = {"index": index, "region_features": np.array(item.features[:n]),
                               "region_boxes": normalized_boxes(item.boxes[:n], item.width, item.height)}
        for name in self.subtasks:
            pairs = q.qa_examples() if name == "qa" else q.qar_examples()
            texts = [pairs[0][0].text, *(choice.text for _, choice in pairs)]
            context, *choices = self.tokenizer.hf(texts, add_special_tokens=False)["input_ids"]
            out[f"{name}_input_ids"] = [encode_pair(self.tokenizer, context, c, self.max_text_tokens) for c in choices]
            out[f"{name}_label"] = q.answer_label if name == "qa" else q.rationale_label
        return out


def collate_vcr(examples: Sequence[dict[str, Any]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Regions (B, R, ...) once per question; per subtask its choices (B, C, T) and labels (B,)."""
    B = len(examples)
    R = max(1, max(len(e["region_boxes"]) for e in examples))
    D = examples[0]["region_features"].shape[1]
    features = np.zeros((B, R, D), dtype=np.float16)
    boxes = np.zeros((B, R, 5), dtype=np.float32)
    region_mask = np.zeros((B, R), dtype=bool)
    batch: dict[str, torch.Tensor] = {}
    for i, e in enumerate(examples):
        r = len(e["region_boxes"])
        features[i, :r], boxes[i, :r], region_mask[i, :r] = e["region_features"], e["region_boxes"], True
    for name in SUBTASKS:
        if f"{name}_input_ids" not in examples[0]:
            continue
        C = len(examples[0][f"{name}_input_ids"])
        T = max(len(ids) for e in examples for ids in e[f"{name}_input_ids"])
        input_ids = np.full((B, C, T), pad_id, dtype=np.int64)
        for i, e in enumerate(examples):
            for j, ids in enumerate(e[f"{name}_input_ids"]):
                input_ids[i, j, : len(ids)] = ids
        batch[f"{name}_input_ids"] = torch.from_numpy(input_ids)
        batch[f"{name}_attention_mask"] = torch.from_numpy(input_ids != pad_id)
        batch[f"{name}_labels"] = torch.tensor([e[f"{name}_label"] for e in examples], dtype=torch.long)
    return {**batch, "region_features": torch.from_numpy(features), "region_boxes": torch.from_numpy(boxes),
            "region_mask": torch.from_numpy(region_mask),
            "index": torch.tensor([e["index"] for e in examples], dtype=torch.long)}
