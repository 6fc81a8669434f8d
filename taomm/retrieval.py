"""Text-to-image retrieval scoring and recall: ITM scores over caption-image pairs, R@K.

The items of a store split give N captions (titles) and N images (region sets); caption i
belongs to image i unless ``relevant`` says otherwise. Scores come from any InterBERT model
with a backbone (``model.interbert``) and an ITM head (``model.itm_head``): the pretraining
model (zero-shot) or the retrieval model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from taomm.datasets.pretraining import normalized_boxes
from taomm.datasets.store import image_key
from taomm.device import autocast
from taomm.model.config import MAX_TEXT_TOKENS
from taomm.text.tokenizer import TitleTokenizer


@dataclass
class Encoded:
    """Padded model inputs of a list of items: their titles and their regions."""

    input_ids: torch.Tensor  # (N, T)
    attention_mask: torch.Tensor  # (N, T) bool
    region_features: torch.Tensor  # (N, R, D) fp16
    region_boxes: torch.Tensor  # (N, R, 5)
    region_mask: torch.Tensor  # (N, R) bool


def encode_items(store: Any, ordinals: Sequence[int], tokenizer: TitleTokenizer, max_tokens: int = MAX_TEXT_TOKENS,
                 max_regions: int = 16) -> Encoded:
    """Titles -> [CLS] tokens [SEP] (truncated to ``max_tokens``); regions -> features and
    normalised boxes (x1/W, y1/H, x2/W, y2/H, area), padded."""
    return encode_loaded([store[int(o)] for o in ordinals], tokenizer, max_tokens, max_regions)


def encode_loaded(items: Sequence[Any], tokenizer: TitleTokenizer, max_tokens: int = MAX_TEXT_TOKENS,
                  max_regions: int = 16) -> Encoded:
    """:func:`encode_items` of store items already read."""
    texts = [tokenizer.encode_words(it.words).ids[: max_tokens - 2] for it in items]
    T = max(len(t) for t in texts) + 2
    ids = np.full((len(items), T), tokenizer.pad_id, dtype=np.int64)
    for i, t in enumerate(texts):
        ids[i, : len(t) + 2] = [tokenizer.cls_id, *t, tokenizer.sep_id]
    return Encoded(torch.from_numpy(ids), torch.from_numpy(ids != tokenizer.pad_id), *encode_regions(items, max_regions))


def encode_regions(items: Sequence[Any], max_regions: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Store items' first ``max_regions`` regions -> features (N, R, D) fp16, normalised boxes
    (N, R, 5) and mask (N, R) bool, padded to the most regions of any item (at least 1)."""
    R = max(1, max(min(it.num_regions, max_regions) for it in items))
    D = items[0].features.shape[1]
    feats = np.zeros((len(items), R, D), dtype=np.float16)
    boxes = np.zeros((len(items), R, 5), dtype=np.float32)
    rmask = np.zeros((len(items), R), dtype=bool)
    for i, it in enumerate(items):
        n = min(it.num_regions, max_regions)
        feats[i, :n], rmask[i, :n] = it.features[:n], True
        boxes[i, :n] = normalized_boxes(it.boxes[:n], it.width, it.height)
    return torch.from_numpy(feats), torch.from_numpy(boxes), torch.from_numpy(rmask)


@torch.no_grad()
def itm_scores(model: torch.nn.Module, texts: Encoded, images: Encoded, caption_idx: np.ndarray,
               image_idx: np.ndarray, batch_size: int = 256, bf16: bool = True,
               on_progress: Callable[[int], None] | None = None) -> np.ndarray:
    """ITM logits of the pairs (texts[caption_idx[k]], images[image_idx[k]]) -> (K,) float32."""
    model.eval()
    device = next(model.parameters()).device
    out = np.empty(len(caption_idx), dtype=np.float32)
    for start in range(0, len(caption_idx), batch_size):
        c = torch.as_tensor(caption_idx[start:start + batch_size])
        i = torch.as_tensor(image_idx[start:start + batch_size])
        with autocast(device, bf16):
            h = model.interbert(texts.input_ids[c].to(device), texts.attention_mask[c].to(device),
                                images.region_features[i].to(device), images.region_boxes[i].to(device),
                                images.region_mask[i].to(device))
            logits = model.itm_head(h.image_cls, h.text_cls)
        out[start:start + len(c)] = logits.float().cpu().numpy()
        if on_progress is not None:
            on_progress(len(c))
    return out


def exhaustive_scores(model: torch.nn.Module, texts: Encoded, images: Encoded, batch_size: int = 256,
                      bf16: bool = True, on_progress: Callable[[int], None] | None = None) -> np.ndarray:
    """(captions, images) ITM score matrix over every pair."""
    n_c, n_i = texts.input_ids.shape[0], images.region_features.shape[0]
    c, i = np.divmod(np.arange(n_c * n_i), n_i)
    return itm_scores(model, texts, images, c, i, batch_size, bf16, on_progress).reshape(n_c, n_i)


def recall_at_k(scores: np.ndarray, relevant: Sequence[Sequence[int]] | None = None,
                ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Text -> image recall: the share of captions (rows) with a relevant image (column)
    among the K best-scored. ``relevant[r]`` lists row r's images (default: image r).
    Ties rank pessimistically: an image tied with a relevant one counts as ranked above it."""
    n = scores.shape[0]
    relevant = [[r] for r in range(n)] if relevant is None else relevant
    ranks = np.empty(n, dtype=np.int64)
    for r in range(n):
        best = scores[r, list(relevant[r])].max()
        others = np.ones(scores.shape[1], dtype=bool)
        others[list(relevant[r])] = False
        ranks[r] = int((scores[r, others] >= best).sum())  # 0 = a relevant image is first
    return {f"R@{k}": float((ranks < k).mean()) for k in ks}


@torch.no_grad()
def contrastive_vectors(model: torch.nn.Module, texts: Encoded, images: Encoded, batch_size: int = 256,
                        bf16: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Unit text-alone and image-alone vectors of a retrieval model -> (N_c, E), (N_i, E)."""
    model.eval()
    device = next(model.parameters()).device
    t_out, i_out = [], []
    with autocast(device, bf16):
        for s in range(0, texts.input_ids.shape[0], batch_size):
            t_out.append(model.encode_text(texts.input_ids[s:s + batch_size].to(device),
                                           texts.attention_mask[s:s + batch_size].to(device)).float().cpu())
        for s in range(0, images.region_features.shape[0], batch_size):
            i_out.append(model.encode_image(images.region_features[s:s + batch_size].to(device),
                                            images.region_boxes[s:s + batch_size].to(device),
                                            images.region_mask[s:s + batch_size].to(device)).float().cpu())
    return torch.cat(t_out).numpy(), torch.cat(i_out).numpy()


def rerank_matrix(similarity: np.ndarray, k: int, score: Callable[[np.ndarray, np.ndarray], np.ndarray]
                  ) -> tuple[np.ndarray, int]:
    """Recall-then-rerank as a full score matrix: per row the ``k`` most similar columns are
    scored by ``score(rows, cols)`` and ranked first (by that score); the other columns
    follow by similarity. Returns the matrix and the number of pairs scored."""
    n_rows, n_cols = similarity.shape
    k = min(k, n_cols)
    top = np.argpartition(-similarity, k - 1, axis=1)[:, :k] if k < n_cols else np.tile(np.arange(n_cols), (n_rows, 1))
    rows = np.repeat(np.arange(n_rows), k)
    cols = top.reshape(-1)
    scored = score(rows, cols)
    out = similarity.astype(np.float64) - 1e9  # below every reranked pair
    out[rows, cols] = scored.astype(np.float64) + 1e9
    return out, len(rows)


MODES = ("exhaustive", "rerank", "contrastive", "random")


def caption_images(item_ids: Sequence[str]) -> tuple[np.ndarray, list[list[int]]]:
    """Group captions by image: (the first caption row of each image, per caption row the
    list holding its image's column)."""
    columns: dict[str, int] = {}
    first, relevant = [], []
    for row, item_id in enumerate(item_ids):
        key = image_key(item_id)
        if key not in columns:
            columns[key] = len(first)
            first.append(row)
        relevant.append([columns[key]])
    return np.asarray(first, dtype=np.int64), relevant


def _subset(enc: Encoded, rows: np.ndarray) -> Encoded:
    index = torch.from_numpy(rows)
    return Encoded(*(getattr(enc, f)[index] for f in ("input_ids", "attention_mask", "region_features",
                                                         "region_boxes", "region_mask")))


def evaluate(model: torch.nn.Module, store: Any, tokenizer: TitleTokenizer, ordinals: Sequence[int], mode: str,
             k: int = 16, batch_size: int = 256, bf16: bool = True, seed: int = 0,
             on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Text -> image R@1/5/10 (and image -> text) over the items ``ordinals``: each title is
    a query, its own image the relevant answer (captions of one photo, ``IMAGE#K``, share a
    single gallery image, as in Flickr30K's 5 captions per image). Modes: ``exhaustive`` (ITM
    on every pair), ``rerank`` (the top ``k`` images by contrastive vectors, reranked by ITM),
    ``contrastive`` (the vectors alone), ``random`` (a random ranking, the floor)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    t0 = time.perf_counter()
    cfg = model.config
    texts = encode_items(store, ordinals, tokenizer, max_tokens=cfg.max_text_tokens,
                         max_regions=cfg.max_regions)
    first, relevant = caption_images([store[int(o)].item_id for o in ordinals])
    images = texts if len(first) == len(ordinals) else _subset(texts, first)
    by_image: list[list[int]] = [[] for _ in first]
    for row, (col,) in enumerate(relevant):
        by_image[col].append(row)
    n, m = len(ordinals), len(first)
    pairs, i2t_pairs = 0, 0
    if mode == "random":
        scores = np.random.default_rng(seed).random((n, m))
        i2t = scores.T
    elif mode == "exhaustive":
        scores = exhaustive_scores(model, texts, images, batch_size, bf16, on_progress)
        i2t, pairs = scores.T, n * m
    else:
        text, image = contrastive_vectors(model, texts, images, batch_size, bf16)
        scores, i2t = text @ image.T, image @ text.T
        if mode == "rerank":
            def itm(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
                return itm_scores(model, texts, images, rows, cols, batch_size, bf16, on_progress)

            scores, pairs = rerank_matrix(scores, k, itm)
            i2t, i2t_pairs = rerank_matrix(i2t, k, lambda rows, cols: itm(cols, rows))
    result: dict[str, Any] = {**recall_at_k(scores, relevant), "mode": mode, "pairs_scored": pairs,
                              "seconds": round(time.perf_counter() - t0, 3), "items": n, "images": m}
    if mode == "rerank":
        result["k"] = k
        result["image_to_text_pairs_scored"] = i2t_pairs
    result["image_to_text"] = recall_at_k(i2t, by_image)
    return result
