"""Pretraining examples and batches: MSM, MRM and ITM with hard negatives (DESIGN.md 7).

- MSM (masked segment modeling): word units (all sub-tokens of a word go together); each
  word is an anchor with p=0.1, the anchor and the next 0-2 words (uniform) are masked, at
  least one word per caption; masked tokens are 80% [MASK], 10% a random token, 10% kept.
  ``mask_mode="token"`` is plain MLM instead (each token with p=0.15), for the ablation.
- MRM (masked region modeling): each region is an anchor with p=0.1, and every region whose
  IoU with an anchor is > 0.4 is masked too; masked features are zeroed, boxes kept; the
  target is the region's detector class. ``region_mask="single"`` masks the anchors only
  (plain masked-object modeling), for the ablation.
- ITM-hn: half the pairs matched; of the others, ``hard_negative_p`` (0.2) take one of the
  item's mined hard-negative captions, the rest a random caption (items without mined
  negatives always take a random one). Every pair is masked alike (so masking says nothing
  about matching); MSM and MRM labels only on matched pairs.
- Negatives are never right answers: no item is the negative of another caption of its
  photo (``IMAGE#K`` ids, :func:`~taomm.datasets.store.image_key`) or of an item with the
  same title, neither as a drawn caption or image nor in a batch's contrastive negatives
  (each example carries its photo and title group, :meth:`ItemPositions.groups`). A random
  negative is drawn exactly, uniform over the allowed items (no reject-and-redraw); a pool
  where some item has fewer allowed negatives than a draw needs is refused up front.

Randomness: the example at global position ``p`` of a run draws everything from
``np.random.default_rng((seed, p))`` and the item order of epoch ``e`` from
``default_rng((seed, e))``. The batch of a step is therefore a function of the seed and
the step alone: a resumed run, any number of DataLoader workers and any number of DDP
ranks draw the same global batches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from taomm.datasets.store import image_key
from taomm.errors import TaommError
from taomm.model.config import MAX_TEXT_TOKENS
from taomm.text.tokenizer import SPECIAL_TOKENS, TitleTokenizer

IGNORE = -100
MASK_MODES = ("segment", "token")
REGION_MASKS = ("iou", "single")


@dataclass(frozen=True)
class MaskingOptions:
    mask_mode: str = "segment"  # segment: MSM over word spans | token: plain MLM
    word_anchor_p: float = 0.1  # MSM: each word is an anchor with this probability
    max_extra_words: int = 2  # MSM: the anchor and the next 0..max_extra_words words
    token_mask_p: float = 0.15  # plain MLM: each token with this probability
    region_mask: str = "iou"  # iou: MRM (anchors + IoU > region_iou) | single: anchors only
    region_anchor_p: float = 0.1
    region_iou: float = 0.4
    match_p: float = 0.5  # ITM: share of matched pairs
    hard_negative_p: float = 0.2  # ITM: share of unmatched pairs with a mined hard negative
    max_text_tokens: int = MAX_TEXT_TOKENS  # [CLS] + title tokens + [SEP], the title truncated to fit
    max_regions: int = 100  # regions per image kept (further capped by the model's max_regions: 16 zh)

    def __post_init__(self) -> None:
        if self.mask_mode not in MASK_MODES:
            raise TaommError(f"mask mode must be one of {', '.join(MASK_MODES)}, not {self.mask_mode!r}")
        if self.region_mask not in REGION_MASKS:
            raise TaommError(f"region mask must be one of {', '.join(REGION_MASKS)}, not {self.region_mask!r}")
        for name in ("word_anchor_p", "token_mask_p", "region_anchor_p", "match_p", "hard_negative_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise TaommError(f"{name} must be within [0, 1], not {getattr(self, name)}")
        if self.max_text_tokens < 3 or self.max_regions < 1:
            raise TaommError("max_text_tokens must be >= 3 and max_regions >= 1")


# --- masking (pure functions of their inputs and a generator) ------------------------------

def masked_words(num_words: int, rng: np.random.Generator, anchor_p: float = 0.1, max_extra: int = 2) -> np.ndarray:
    """(W,) bool: the words to mask. Each word is an anchor with ``anchor_p``; an anchor masks
    itself and the next 0..``max_extra`` words (uniform). With no anchor drawn, one word is
    picked uniformly as the anchor, so at least one word is masked (when W > 0)."""
    anchors = rng.random(num_words) < anchor_p
    extra = rng.integers(0, max_extra + 1, num_words)
    fallback = int(rng.integers(0, max(num_words, 1)))
    if num_words and not anchors.any():
        anchors[fallback] = True
    # mask[j] when some anchor a <= j has a + extra[a] >= j
    reach = np.where(anchors, np.arange(num_words) + extra, -1)
    return np.maximum.accumulate(reach) >= np.arange(num_words) if num_words else anchors


def masked_tokens(num_tokens: int, rng: np.random.Generator, p: float = 0.15) -> np.ndarray:
    """(T,) bool: plain MLM, each token with probability ``p``, at least one (when T > 0)."""
    picked = rng.random(num_tokens) < p
    fallback = int(rng.integers(0, max(num_tokens, 1)))
    if num_tokens and not picked.any():
        picked[fallback] = True
    return picked


def replace_masked(ids: np.ndarray, masked: np.ndarray, rng: np.random.Generator, mask_id: int,
                   random_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BERT's 80/10/10: masked tokens become [MASK] (80%), a random non-special token (10%)
    or stay (10%). Returns (input ids, labels: the original id where masked, else -100)."""
    draw = rng.random(len(ids))
    random_tokens = random_ids[rng.integers(0, len(random_ids), len(ids))]
    out = ids.copy()
    out[masked & (draw < 0.8)] = mask_id
    swap = masked & (draw >= 0.8) & (draw < 0.9)
    out[swap] = random_tokens[swap]
    return out, np.where(masked, ids, IGNORE)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (N, 4) and b (M, 4), x1 y1 x2 y2 -> (N, M)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def masked_regions(boxes: np.ndarray, rng: np.random.Generator, anchor_p: float = 0.1, iou: float = 0.4,
                   mode: str = "iou") -> np.ndarray:
    """(R,) bool: anchors with ``anchor_p``; in ``iou`` mode also every region whose IoU with
    an anchor is > ``iou`` (the regions that would leak the anchor's content)."""
    anchors = rng.random(len(boxes)) < anchor_p
    if mode == "single" or not anchors.any():
        return anchors
    return anchors | (box_iou(boxes, boxes[anchors]) > iou).any(axis=1)


# --- the dataset -------------------------------------------------------------------------

class ItemPositions(torch.utils.data.Dataset):
    """Examples by global position over a pool of store items: position ``p`` is item
    ``order_e[p % N]`` of epoch ``e = p // N``, each epoch its own permutation drawn from
    ``(seed, e)``. Subclasses build the example of a position from ``self.rng(position)``."""

    stream = 0  # subclasses draw from their own stream of generators

    def __init__(self, store: Any, tokenizer: TitleTokenizer, ordinals: Sequence[int], seed: int = 0,
                 max_text_tokens: int = MAX_TEXT_TOKENS, max_regions: int = 16) -> None:
        self.store = store
        self.tokenizer = tokenizer
        self.ordinals = np.asarray(ordinals, dtype=np.int64)
        if len(self.ordinals) < 2:
            raise TaommError("training needs at least 2 items (another item's caption or image is the negative)")
        if len(np.unique(self.ordinals)) != len(self.ordinals):
            raise TaommError("training ordinals must be unique")
        self.seed = seed
        self.max_text_tokens, self.max_regions = max_text_tokens, max_regions
        self.pool_index = np.full(len(store), -1, dtype=np.int64)  # store ordinal -> index in ordinals
        self.pool_index[self.ordinals] = np.arange(len(self.ordinals))
        self.photo, self.title = pool_groups(store, self.ordinals)
        self._orders: dict[int, np.ndarray] = {}
        # the fast tokenizer's own threads must not run across DataLoader worker forks
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def __len__(self) -> int:
        return len(self.ordinals)

    def rng(self, position: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.stream << 32, position))

    def ordinal_at(self, position: int) -> int:
        """The item at a global position: epoch ``position // len`` in its own permutation."""
        epoch, index = divmod(position, len(self.ordinals))
        order = self._orders.get(epoch)
        if order is None:
            order = np.random.default_rng((self.seed, epoch)).permutation(len(self.ordinals))
            self._orders = {epoch: order}
        return int(self.ordinals[order[index]])

    def groups(self, ordinal: int) -> np.ndarray:
        """(2,) int64: the item's photo and title group in the pool (for in-batch negatives)."""
        index = self.pool_index[ordinal]
        return np.asarray([self.photo.ids[index], self.title.ids[index]], dtype=np.int64)

    def excluded(self, ordinal: int) -> np.ndarray:
        """Sorted pool indices that are never ``ordinal``'s negative: itself, the other
        captions of its photo and the items with its title."""
        index = self.pool_index[ordinal]
        return np.union1d(self.photo.members(self.photo.ids[index]), self.title.members(self.title.ids[index]))

    def check_negatives(self, needed: int) -> None:
        """Refuse a pool where an item has fewer than ``needed`` allowed negatives."""
        free = len(self.ordinals) - self.photo.sizes[self.photo.ids] - self.title.sizes[self.title.ids] \
            + _pair_sizes(self.photo.ids, self.title.ids)
        worst = int(np.argmin(free))
        if free[worst] < needed:
            item_id = self.store[int(self.ordinals[worst])].item_id
            raise TaommError(f"item {item_id!r}: only {free[worst]} of the {len(self.ordinals)} training items may be "
                             f"its negative (the others share its photo or title), {needed} needed: train on more "
                             "items or ask for fewer negatives")

    def random_other(self, ordinal: int, pick: int, chosen: Sequence[int] = ()) -> int:
        """Allowed item ``pick`` (mod their count) of the pool: uniform over the items that
        are neither excluded (:meth:`excluded`) nor ``chosen`` (negatives taken already).
        Exact, without redraws: the k-th allowed index is k plus the excluded indices at or
        below it."""
        excluded = self.excluded(ordinal)
        if len(chosen):
            excluded = np.union1d(excluded, self.pool_index[np.asarray(chosen, dtype=np.int64)])
        free = len(self.ordinals) - len(excluded)
        if free < 1:  # check_negatives refuses such pools up front
            raise TaommError(f"no allowed negative left for store item {ordinal}")
        k = int(pick % free)
        # excluded[j] - j = allowed indices below excluded[j]
        return int(self.ordinals[k + np.searchsorted(excluded - np.arange(len(excluded)), k, side="right")])

    def pool_negatives(self, ordinal: int) -> np.ndarray:
        """The item's mined hard negatives that are in the pool and allowed (not of its
        photo or title: mining may have seen other groups than the pool's)."""
        negatives = self.store.negatives(ordinal)
        if not len(negatives):
            return negatives
        negatives = negatives[self.pool_index[negatives] >= 0]
        index, others = self.pool_index[ordinal], self.pool_index[negatives]
        allowed = (self.photo.ids[others] != self.photo.ids[index]) & (self.title.ids[others] != self.title.ids[index])
        return negatives[allowed]

    def title_tokens(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Title tokens (no specials), truncated to leave room for [CLS] and [SEP], and the
        word index of each."""
        encoded = self.tokenizer.encode_words(words)
        keep = self.max_text_tokens - 2
        return encoded.ids[:keep], encoded.word_index[:keep]

    def wrap(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray([self.tokenizer.cls_id, *ids, self.tokenizer.sep_id], dtype=np.int64)

    def regions(self, item: Any) -> tuple[np.ndarray, np.ndarray]:
        """The first ``max_regions`` regions: features (a writable copy) and boxes as
        (x1/W, y1/H, x2/W, y2/H, area)."""
        n = min(item.num_regions, self.max_regions)
        features = np.array(item.features[:n])
        return features, normalized_boxes(item.boxes[:n], item.width, item.height)


@dataclass(frozen=True)
class Groups:
    """A partition of the pool: ``ids[i]`` is pool item i's group; :meth:`members` lists a
    group's pool indices (sorted), ``sizes`` each group's count."""

    ids: np.ndarray  # (N,) int64
    order: np.ndarray  # (N,) pool indices sorted by group
    starts: np.ndarray  # (G + 1,) group g is order[starts[g]:starts[g + 1]]

    @classmethod
    def of(cls, keys: Sequence[str]) -> Groups:
        _, ids = np.unique(np.asarray(keys, dtype=object), return_inverse=True)
        ids = ids.astype(np.int64).reshape(-1)
        order = np.argsort(ids, kind="stable")
        return cls(ids, order, np.searchsorted(ids[order], np.arange(int(ids.max(initial=-1)) + 2)))

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.starts)

    def members(self, group: int) -> np.ndarray:
        return self.order[self.starts[group]:self.starts[group + 1]]


def pool_groups(store: Any, ordinals: np.ndarray) -> tuple[Groups, Groups]:
    """The pool's photo groups (:func:`image_key` of the item ids) and title groups."""
    photos, titles = [], []
    for ordinal in ordinals:
        item = store[int(ordinal)]
        photos.append(image_key(item.item_id))
        titles.append(item.title)
    return Groups.of(photos), Groups.of(titles)


def _pair_sizes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) how many items share both item i's group in ``a`` and in ``b``."""
    _, inverse, counts = np.unique(np.stack([a, b], axis=1), axis=0, return_inverse=True, return_counts=True)
    return counts[inverse.reshape(-1)]


def normalized_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel boxes (N, 4) -> (N, 5): x1/W, y1/H, x2/W, y2/H, area (as the model expects)."""
    w, h = max(width, 1), max(height, 1)
    norm = np.asarray(boxes, dtype=np.float32) / np.asarray([w, h, w, h], dtype=np.float32)
    area = (norm[:, 2] - norm[:, 0]) * (norm[:, 3] - norm[:, 1])
    return np.concatenate([norm, area[:, None]], axis=1).astype(np.float32)


class PretrainingData(ItemPositions):
    """Pretraining examples by global position (see the module docstring).

    ``store`` is a FeatureStore or ShardedStore; ``ordinals`` the items to train on (their
    titles are also the pool of random and hard-negative captions: negatives mined against
    items outside it, e.g. the test split, are never used).
    """

    stream = 1

    def __init__(self, store: Any, tokenizer: TitleTokenizer, ordinals: Sequence[int], seed: int = 0,
                 options: MaskingOptions | None = None) -> None:
        self.options = options or MaskingOptions()
        super().__init__(store, tokenizer, ordinals, seed, self.options.max_text_tokens, self.options.max_regions)
        specials = [tokenizer.vocab[t] for t in SPECIAL_TOKENS]
        self.random_ids = np.setdiff1d(np.arange(len(tokenizer)), specials)
        self.check_negatives(1 if self.options.match_p < 1 else 0)

    def __getitem__(self, position: int) -> dict[str, Any]:
        opts = self.options
        rng = self.rng(position)
        ordinal = self.ordinal_at(position)
        item = self.store[ordinal]
        # ITM: which caption goes with this image
        matched = bool(rng.random() < opts.match_p)
        hard_draw, pick = rng.random(), rng.integers(0, 1 << 62)
        caption, negative_kind = ordinal, "none"
        if not matched:
            negatives = self.pool_negatives(ordinal)
            if len(negatives) and hard_draw < opts.hard_negative_p:
                caption, negative_kind = int(negatives[pick % len(negatives)]), "hard"
            else:
                caption, negative_kind = self.random_other(ordinal, pick), "random"
        words = item.words if caption == ordinal else self.store[caption].words
        input_ids, msm_labels = self._text(words, rng, labelled=matched)
        features, boxes, region_labels = self._regions(item, rng, labelled=matched)
        own_ids, _ = self.title_tokens(item.words)  # the image's own caption, unmasked (for ITC)
        return {"input_ids": input_ids, "msm_labels": msm_labels, "region_features": features,
                "region_boxes": boxes, "mrm_labels": region_labels, "itm_label": int(matched),
                "ordinal": ordinal, "caption": caption, "negative": negative_kind, "own_input_ids": self.wrap(own_ids),
                "groups": self.groups(ordinal)}

    def _text(self, words: list[str], rng: np.random.Generator, labelled: bool) -> tuple[np.ndarray, np.ndarray]:
        # Every pair is masked the same way, matched or not: were only matched pairs masked,
        # ITM would learn "has [MASK] -> matched" (measured: 99% held-out ITM accuracy and
        # zero-shot retrieval below random). Only matched pairs carry MSM labels.
        tok, opts = self.tokenizer, self.options
        ids, word_index = self.title_tokens(words)
        if opts.mask_mode == "segment":
            # word units present after truncation, renumbered 0..W-1
            _, unit = np.unique(word_index, return_inverse=True)
            words_masked = masked_words(int(unit.max()) + 1 if len(unit) else 0, rng, opts.word_anchor_p,
                                        opts.max_extra_words)
            token_masked = words_masked[unit] if len(unit) else np.zeros(0, bool)
        else:
            token_masked = masked_tokens(len(ids), rng, opts.token_mask_p)
        ids, labels = replace_masked(ids, token_masked, rng, tok.mask_id, self.random_ids)
        if not labelled:
            labels = np.full(len(ids), IGNORE, dtype=np.int64)
        return self.wrap(ids), np.concatenate([[IGNORE], labels, [IGNORE]]).astype(np.int64)

    def _regions(self, item: Any, rng: np.random.Generator, labelled: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        opts = self.options
        n = min(item.num_regions, opts.max_regions)
        features, boxes = self.regions(item)
        chosen = masked_regions(np.asarray(item.boxes[:n], dtype=np.float32), rng, opts.region_anchor_p,
                                opts.region_iou, opts.region_mask)
        labels = np.full(n, IGNORE, dtype=np.int64)
        features[chosen] = 0  # on every pair, as the text (see _text)
        if labelled:
            known = chosen & (np.asarray(item.labels[:n]) >= 0)
            labels[known] = np.asarray(item.labels[:n])[known]
        return features, boxes, labels


def collate_pretraining(examples: Sequence[dict[str, Any]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad a list of examples into the model's inputs (+ labels, counts and the images'
    photo/title ``groups`` (B, 2), for the contrastive loss)."""
    B = len(examples)
    T = max(len(e["input_ids"]) for e in examples)
    R = max(len(e["region_boxes"]) for e in examples)
    D = examples[0]["region_features"].shape[1]
    input_ids = np.full((B, T), pad_id, dtype=np.int64)
    T_own = max(len(e["own_input_ids"]) for e in examples)
    own = np.full((B, T_own), pad_id, dtype=np.int64)
    own_mask = np.zeros((B, T_own), dtype=bool)
    msm = np.full((B, T), IGNORE, dtype=np.int64)
    attention = np.zeros((B, T), dtype=bool)
    features = np.zeros((B, R, D), dtype=np.float16)
    boxes = np.zeros((B, R, 5), dtype=np.float32)
    region_mask = np.zeros((B, R), dtype=bool)
    mrm = np.full((B, R), IGNORE, dtype=np.int64)
    for i, e in enumerate(examples):
        t, r = len(e["input_ids"]), len(e["region_boxes"])
        input_ids[i, :t], msm[i, :t], attention[i, :t] = e["input_ids"], e["msm_labels"], True
        own[i, : len(e["own_input_ids"])], own_mask[i, : len(e["own_input_ids"])] = e["own_input_ids"], True
        features[i, :r], boxes[i, :r], region_mask[i, :r], mrm[i, :r] = (
            e["region_features"], e["region_boxes"], True, e["mrm_labels"])
    return {
        "input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention),
        "region_features": torch.from_numpy(features), "region_boxes": torch.from_numpy(boxes),
        "region_mask": torch.from_numpy(region_mask), "msm_labels": torch.from_numpy(msm),
        "mrm_labels": torch.from_numpy(mrm),
        "itm_labels": torch.tensor([e["itm_label"] for e in examples], dtype=torch.long),
        "ordinals": torch.tensor([e["ordinal"] for e in examples], dtype=torch.long),
        "itc_input_ids": torch.from_numpy(own), "itc_attention_mask": torch.from_numpy(own_mask),
        "groups": torch.from_numpy(np.stack([e["groups"] for e in examples])),
    }
