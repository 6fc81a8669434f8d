"""Retrieval finetuning examples: a caption with its image and negative images (DESIGN.md 7).

The paper's recipe: each caption (an item's title) with its own image and 3 other images,
a 4-way multiple choice over ITM scores. Negative images come partly from hard ones: with
probability ``hard_p`` each is the image of one of the item's TF-IDF hard-negative captions
(a similar title of another product), otherwise a random item's image (when no hard one
is left, a random one too). Images whose title equals the caption's, and other captions'
of the same photo (``IMAGE#K`` ids), are never negatives (they would be right answers):
hard ones are filtered, random ones drawn exactly among the allowed items
(``ItemPositions.random_other``), and a pool where an item has fewer allowed images than
``negatives`` is refused up front. As in pretraining,
everything about position ``p`` is drawn from its own generator, so a resumed or
distributed run reads the same global batches.

Beyond the paper, each example also carries a *query*: with probability ``query_p`` a
random subset of the caption's words (each kept with probability ``query_keep``, at least
one), else the caption itself. Shoppers type a few attribute words ("波点荷叶边裙"), not a
seller's 30-character title; the contrastive losses train on these queries so the text
encoder sees short queries too.

A *query log* (``read_query_log``: what shoppers typed and the item they chose, one
``{"query", "item_id"}`` per line) adds the words sellers never write: generic nouns (上衣
for T恤 and 衬衫), the canonical name of a colour a title gave as a synonym, an attribute the
title left out but the photo shows. With probability ``log_p`` an item's query is one of its
logged queries instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taomm.datasets.pretraining import ItemPositions
from taomm.errors import TaommError
from taomm.model.config import MAX_TEXT_TOKENS
from taomm.text.tokenizer import TitleTokenizer


class RetrievalData(ItemPositions):
    stream = 2

    def __init__(self, store: Any, tokenizer: TitleTokenizer, ordinals: Sequence[int], seed: int = 0,
                 negatives: int = 3, hard_p: float = 0.5, max_text_tokens: int = MAX_TEXT_TOKENS, max_regions: int = 16,
                 query_p: float = 0.5, query_keep: float = 0.5,
                 query_log: Mapping[int, Sequence[Sequence[str]]] | None = None, log_p: float = 0.5) -> None:
        super().__init__(store, tokenizer, ordinals, seed, max_text_tokens, max_regions)
        if negatives < 1 or negatives >= len(self.ordinals):
            raise TaommError(f"need 1 <= negatives < {len(self.ordinals)} items, not {negatives}")
        if not 0.0 <= hard_p <= 1.0:
            raise TaommError(f"hard-negative share must be within [0, 1], not {hard_p}")
        if not (0.0 <= query_p <= 1.0 and 0.0 < query_keep <= 1.0):
            raise TaommError(f"query share and keep probability must be within [0, 1], not {query_p}, {query_keep}")
        self.negatives, self.hard_p = negatives, hard_p
        if not 0.0 <= log_p <= 1.0:
            raise TaommError(f"query-log share must be within [0, 1], not {log_p}")
        self.query_p, self.query_keep = query_p, query_keep
        self.query_log = {int(k): [list(q) for q in v] for k, v in (query_log or {}).items() if v}
        self.log_p = log_p
        self.check_negatives(negatives)

    def __getitem__(self, position: int) -> dict[str, Any]:
        rng = self.rng(position)
        ordinal = self.ordinal_at(position)
        item = self.store[ordinal]
        hard = [int(o) for o in self.pool_negatives(ordinal)]  # allowed ones only
        chosen: list[int] = []
        kinds: list[str] = []
        for _ in range(self.negatives):
            use_hard = rng.random() < self.hard_p
            candidates = [o for o in hard if o not in chosen] if use_hard else []
            if candidates:
                pick, kind = candidates[int(rng.integers(0, len(candidates)))], "hard"
            else:
                pick, kind = self.random_other(ordinal, int(rng.integers(0, 1 << 62)), chosen), "random"
            chosen.append(pick)
            kinds.append(kind)
        ids, _ = self.title_tokens(item.words)
        query = query_words(item.words, rng, self.query_keep) if rng.random() < self.query_p else item.words
        logged = self.query_log.get(ordinal)
        if logged and rng.random() < self.log_p:  # drawn after the others: without a log, the same examples
            query = logged[int(rng.integers(len(logged)))]
        query_ids, _ = self.title_tokens(query)
        images = [self.regions(self.store[o]) for o in (ordinal, *chosen)]
        return {"input_ids": self.wrap(ids), "query_ids": self.wrap(query_ids), "images": images, "ordinal": ordinal,
                "negatives": chosen, "kinds": kinds, "groups": self.groups(ordinal)}


def query_words(words: Sequence[str], rng: np.random.Generator, keep: float = 0.5) -> list[str]:
    """A query-like subset of a caption's words (in order): each word kept with probability
    ``keep``, blanks dropped, at least one word."""
    real = [w for w in words if w.strip()]
    if not real:
        return list(words)
    kept = rng.random(len(real)) < keep
    if not kept.any():
        kept[rng.integers(len(real))] = True
    return [w for w, k in zip(real, kept, strict=True) if k]


@dataclass
class QueryLog:
    """Logged queries by store ordinal (cleaned words), and what was skipped, with why."""

    queries: dict[int, list[list[str]]] = field(default_factory=dict)
    lines: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def pairs(self) -> int:
        return sum(len(v) for v in self.queries.values())

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def iter_query_log(path: str | os.PathLike[str]) -> Iterator[tuple[str, str] | str]:
    """The lines of a query log (JSON lines ``{"query": str, "item_id": str}``, one per
    chosen item): ``(query, item_id)``, or the reason a line is unusable."""
    path = Path(path)
    if not path.is_file():
        raise TaommError(f"query log {path} does not exist")
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                yield "bad_json"
                continue
            if isinstance(row, dict) and isinstance(row.get("query"), str) and isinstance(row.get("item_id"), str):
                yield row["query"], row["item_id"]
            else:
                yield "not_query_item"


def logged_queries(path: str | os.PathLike[str]) -> list[str]:
    """The query texts of a query log's usable lines (for a vocabulary)."""
    return [entry[0] for entry in iter_query_log(path) if not isinstance(entry, str)]


def read_query_log(path: str | os.PathLike[str], store: Any, language: str = "zh") -> QueryLog:
    """Read a query log (``iter_query_log``) against ``store``: each query cleaned with the
    store language's title pipeline, repeats of a (query, item) pair kept once. Unusable
    lines, items not in the store and queries with no word are skipped and counted, never
    fatal."""
    from taomm.text.clean import make_cleaner

    cleaner = make_cleaner(language)
    log = QueryLog()
    seen: set[tuple[int, tuple[str, ...]]] = set()
    cleaned: dict[str, tuple[str, ...]] = {}  # a log repeats its queries: clean each text once
    for entry in iter_query_log(path):
        log.lines += 1
        if isinstance(entry, str):
            log.skip(entry)
            continue
        query, item_id = entry
        if item_id not in store:
            log.skip("unknown_item")
            continue
        words = cleaned.get(query)
        if words is None:
            words = cleaned[query] = tuple(w for w in cleaner(query).words if w.strip())
        if not words:
            log.skip("empty_query")
            continue
        key = (store.ordinal(item_id), words)
        if key not in seen:
            seen.add(key)
            log.queries.setdefault(key[0], []).append(list(words))
    return log


def collate_retrieval(examples: Sequence[dict[str, Any]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Captions (B, T), their queries (B, Q) and their candidate images (B, C, R, ...), the
    right one first; each item's photo/title ``groups`` (B, 2), for the in-batch losses."""
    B, C = len(examples), len(examples[0]["images"])
    T = max(len(e["input_ids"]) for e in examples)
    Q = max(len(e["query_ids"]) for e in examples)
    query_ids = np.full((B, Q), pad_id, dtype=np.int64)
    R = max(1, max(len(boxes) for e in examples for _, boxes in e["images"]))
    D = examples[0]["images"][0][0].shape[1]
    input_ids = np.full((B, T), pad_id, dtype=np.int64)
    features = np.zeros((B, C, R, D), dtype=np.float16)
    boxes = np.zeros((B, C, R, 5), dtype=np.float32)
    region_mask = np.zeros((B, C, R), dtype=bool)
    for i, e in enumerate(examples):
        input_ids[i, : len(e["input_ids"])] = e["input_ids"]
        query_ids[i, : len(e["query_ids"])] = e["query_ids"]
        for j, (f, b) in enumerate(e["images"]):
            features[i, j, : len(b)], boxes[i, j, : len(b)], region_mask[i, j, : len(b)] = f, b, True
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(input_ids != pad_id),
            "region_features": torch.from_numpy(features), "region_boxes": torch.from_numpy(boxes),
            "region_mask": torch.from_numpy(region_mask), "query_ids": torch.from_numpy(query_ids),
            "query_mask": torch.from_numpy(query_ids != pad_id),
            "ordinals": torch.tensor([e["ordinal"] for e in examples], dtype=torch.long),
            "groups": torch.from_numpy(np.stack([e["groups"] for e in examples]))}
