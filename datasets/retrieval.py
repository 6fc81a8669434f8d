"""Retrieval finetuning examples: a caption with its image and negative images (DESIGN.md 7).

The paper's recipe: each caption (an item's title) with its own image and 3 other images,
a 4-way multiple choice over ITM scores. Negative images come partly from hard ones: with
probability ``hard_p`` each is the image of one of the item's TF-IDF hard-negative captions
(a similar title of another product), otherwise a random item's image. Images whose title
equals the caption's, and other captions' of the same photo (``IMAGE#K`` ids), are never
negatives (they would be right answers). As in pretraining,
everything about position ``p`` is drawn from its own generator, so a resumed or
distributed run reads the same global batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from taomm.datasets.pretraining import ItemPositions
from taomm.datasets.store import image_key
from taomm.errors import TaommError
from taomm.text.tokenizer import TitleTokenizer


class RetrievalData(ItemPositions):
    stream = 2

    def __init__(self, store: Any, tokenizer: TitleTokenizer, ordinals: Sequence[int], seed: int = 0,
                 negatives: int = 3, hard_p: float = 0.5, max_text_tokens: int = 40, max_regions: int = 16) -> None:
        super().__init__(store, tokenizer, ordinals, seed, max_text_tokens, max_regions)
        if negatives < 1 or negatives >= len(self.ordinals):
            raise TaommError(f"need 1 <= negatives < {len(self.ordinals)} items, not {negatives}")
        if not 0.0 <= hard_p <= 1.0:
            raise TaommError(f"hard-negative share must be within [0, 1], not {hard_p}")
        self.negatives, self.hard_p = negatives, hard_p

    def __getitem__(self, position: int) -> dict[str, Any]:
        rng = self.rng(position)
        ordinal = self.ordinal_at(position)
        item = self.store[ordinal]
        hard = [int(o) for o in self.pool_negatives(ordinal)]
        photo = image_key(item.item_id)
        chosen: list[int] = []
        kinds: list[str] = []
        for _ in range(self.negatives):
            use_hard = rng.random() < self.hard_p
            for _attempt in range(8):  # skip repeats and same-title items
                candidates = [o for o in hard if o not in chosen] if use_hard else []
                if candidates:
                    pick, kind = candidates[int(rng.integers(0, len(candidates)))], "hard"
                else:
                    pick, kind = self.random_other(ordinal, int(rng.integers(0, 1 << 62))), "random"
                other = self.store[pick]
                if pick not in chosen and other.title != item.title and image_key(other.item_id) != photo:
                    break
                if kind == "hard":
                    hard.remove(pick)
            chosen.append(pick)
            kinds.append(kind)
        ids, _ = self.title_tokens(item.words)
        images = [self.regions(self.store[o]) for o in (ordinal, *chosen)]
        return {"input_ids": self.wrap(ids), "images": images, "ordinal": ordinal, "negatives": chosen,
                "kinds": kinds}


def collate_retrieval(examples: Sequence[dict[str, Any]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Captions (B, T) and their candidate images (B, C, R, ...), the right one first."""
    B, C = len(examples), len(examples[0]["images"])
    T = max(len(e["input_ids"]) for e in examples)
    R = max(1, max(len(boxes) for e in examples for _, boxes in e["images"]))
    D = examples[0]["images"][0][0].shape[1]
    input_ids = np.full((B, T), pad_id, dtype=np.int64)
    features = np.zeros((B, C, R, D), dtype=np.float16)
    boxes = np.zeros((B, C, R, 5), dtype=np.float32)
    region_mask = np.zeros((B, C, R), dtype=bool)
    for i, e in enumerate(examples):
        input_ids[i, : len(e["input_ids"])] = e["input_ids"]
        for j, (f, b) in enumerate(e["images"]):
            features[i, j, : len(b)], boxes[i, j, : len(b)], region_mask[i, j, : len(b)] = f, b, True
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(input_ids != pad_id),
            "region_features": torch.from_numpy(features), "region_boxes": torch.from_numpy(boxes),
            "region_mask": torch.from_numpy(region_mask),
            "ordinals": torch.tensor([e["ordinal"] for e in examples], dtype=torch.long)}
