"""Text-to-image retrieval scoring and recall: ITM scores over caption-image pairs, R@K.

The items of a store split give N captions (titles) and N images (region sets); caption i
belongs to image i unless ``relevant`` says otherwise. Scores come from any InterBERT model
with a backbone (``model.interbert``) and an ITM head (``model.itm_head``): the pretraining
model (zero-shot) or the retrieval model.

:func:`evaluate` streams the split (the functions over whole score matrices, such as
:func:`recall_at_k` and :func:`rerank_matrix`, are its reference): items are read from the
store a batch at a time, and it holds the (N, E) contrastive vectors and one block of score
rows, ranking each query's relevant answer as :func:`recall_at_k` does. Under torchrun each
rank ranks a contiguous share of the caption rows and of the image columns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch

from taomm.datasets.pretraining import normalized_boxes
from taomm.datasets.store import image_key
from taomm.device import autocast
from taomm.errors import TaommError
from taomm.model.config import MAX_TEXT_TOKENS
from taomm.text.tokenizer import TitleTokenizer
from taomm.train.distributed import (
    DistInfo,
    all_gather_json,
    all_gather_rows,
    all_reduce_sum,
    check_row_shares,
    on_every_rank,
    row_share,
)

# Under torchrun the ranks wait for the slowest block of ITM pairs: hours on a large split,
# far past torch's default collective timeout.
EVALUATION_TIMEOUT = timedelta(days=1)


@dataclass
class Encoded:
    """Padded model inputs of a list of items: their titles and their regions."""

    input_ids: torch.Tensor  # (N, T)
    attention_mask: torch.Tensor  # (N, T) bool
    region_features: torch.Tensor  # (N, R, D) fp16
    region_boxes: torch.Tensor  # (N, R, 5)
    region_mask: torch.Tensor  # (N, R) bool


def encode_items(store: Any, ordinals: Sequence[int], tokenizer: TitleTokenizer, max_tokens: int = MAX_TEXT_TOKENS,
                 max_regions: int = 16, pad_to: tuple[int, int] = (0, 0)) -> Encoded:
    """Titles -> [CLS] tokens [SEP] (truncated to ``max_tokens``); regions -> features and
    normalised boxes (x1/W, y1/H, x2/W, y2/H, area), padded to the longest, or to at least
    ``pad_to`` (tokens, regions)."""
    return encode_loaded([store[int(o)] for o in ordinals], tokenizer, max_tokens, max_regions, pad_to)


def encode_loaded(items: Sequence[Any], tokenizer: TitleTokenizer, max_tokens: int = MAX_TEXT_TOKENS,
                  max_regions: int = 16, pad_to: tuple[int, int] = (0, 0)) -> Encoded:
    """:func:`encode_items` of store items already read."""
    texts = [tokenizer.encode_words(it.words).ids[: max_tokens - 2] for it in items]
    T = max(max(len(t) for t in texts) + 2, pad_to[0])
    ids = np.full((len(items), T), tokenizer.pad_id, dtype=np.int64)
    for i, t in enumerate(texts):
        ids[i, : len(t) + 2] = [tokenizer.cls_id, *t, tokenizer.sep_id]
    return Encoded(torch.from_numpy(ids), torch.from_numpy(ids != tokenizer.pad_id),
                   *encode_regions(items, max_regions, pad_to[1]))


def encode_regions(items: Sequence[Any], max_regions: int = 16,
                   pad_to: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Store items' first ``max_regions`` regions -> features (N, R, D) fp16, normalised boxes
    (N, R, 5) and mask (N, R) bool, padded to the most regions of any item (at least 1, and
    at least ``pad_to``)."""
    R = max(1, pad_to, max(min(it.num_regions, max_regions) for it in items))
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
    relevant = [[r] for r in range(scores.shape[0])] if relevant is None else relevant
    return recall_from_ranks(pessimistic_ranks(scores, relevant), ks)


def pessimistic_ranks(scores: np.ndarray, relevant: Sequence[Sequence[int]]) -> np.ndarray:
    """Per row of ``scores``, how many columns outside ``relevant[r]`` score at least its best
    relevant one (0: a relevant column is first; a tie counts as ranked above) -> (rows,) int64."""
    ranks = np.empty(scores.shape[0], dtype=np.int64)
    for r in range(scores.shape[0]):
        best = scores[r, list(relevant[r])].max()
        others = np.ones(scores.shape[1], dtype=bool)
        others[list(relevant[r])] = False
        ranks[r] = int((scores[r, others] >= best).sum())
    return ranks


def recall_from_ranks(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """R@K from each query's :func:`pessimistic_ranks`: the share ranked below K."""
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
    empty = torch.zeros(0, model.config.retrieval_embedding_size)  # no images: (0, E)
    return torch.cat([empty, *t_out]).numpy(), torch.cat([empty, *i_out]).numpy()


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
ITM_MODES = ("exhaustive", "rerank")
# Query rows ranked at a time: a block's (BLOCK_ROWS, M) scores are all the score matrix held.
BLOCK_ROWS = 256
Progress = Callable[[str, int | None], AbstractContextManager[Callable[[int], None]]]


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


@dataclass
class Gallery:
    """A split as retrieval sees it: N caption rows (store items) and M image columns (one per
    photo: captions ``IMAGE#K`` share one), and which belong together."""

    ordinals: np.ndarray  # (N,) each caption row's store ordinal
    first: np.ndarray  # (M,) each image column's first caption row (its item holds the regions)
    column: np.ndarray  # (N,) each caption row's image column
    by_image: list[list[int]]  # per image column, its caption rows
    pad_to: tuple[int, int]  # the split's longest title in tokens and most regions: every batch's padding

    @property
    def n(self) -> int:
        return len(self.ordinals)

    @property
    def m(self) -> int:
        return len(self.first)


def read_gallery(store: Any, ordinals: Sequence[int], tokenizer: TitleTokenizer, max_tokens: int = MAX_TEXT_TOKENS,
                 max_regions: int = 16) -> Gallery:
    """The :class:`Gallery` of the items ``ordinals``, read one at a time (their ids and sizes
    kept). Every batch is padded to the split's longest, as the whole split encoded at once
    was: a pair's inputs do not depend on the batch it is scored in."""
    ordinals = np.asarray(ordinals, dtype=np.int64)
    item_ids, tokens, regions = [], 2, 1
    for o in ordinals:
        item = store[int(o)]
        item_ids.append(item.item_id)
        tokens = max(tokens, min(len(tokenizer.encode_words(item.words).ids), max_tokens - 2) + 2)
        regions = max(regions, min(item.num_regions, max_regions))
    first, relevant = caption_images(item_ids)
    column = np.asarray([col for (col,) in relevant], dtype=np.int64)
    by_image: list[list[int]] = [[] for _ in first]
    for row, col in enumerate(column.tolist()):
        by_image[col].append(row)
    return Gallery(ordinals, first, column, by_image, (tokens, regions))


def _subset(enc: Encoded, rows: np.ndarray) -> Encoded:
    index = torch.from_numpy(rows)
    return Encoded(*(getattr(enc, f)[index] for f in ("input_ids", "attention_mask", "region_features",
                                                         "region_boxes", "region_mask")))


@dataclass
class _Scorer:
    """What one evaluation scores with. Items are read from the store a batch at a time, when
    a batch needs them: never the whole split's model inputs at once."""

    model: torch.nn.Module
    store: Any
    tokenizer: TitleTokenizer
    gallery: Gallery
    batch_size: int
    bf16: bool
    block_rows: int
    on_progress: Callable[[int], None] | None = None

    def encode(self, rows: np.ndarray) -> Encoded:
        """The model inputs of the caption rows ``rows`` (their titles and their items' regions)."""
        cfg = self.model.config
        return encode_items(self.store, self.gallery.ordinals[rows], self.tokenizer, cfg.max_text_tokens,
                            cfg.max_regions, self.gallery.pad_to)

    def pairs(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """ITM scores of (caption ``rows[k]``, image column ``cols[k]``) -> (K,) float32, reading
        the items of one batch of pairs at a time."""
        out = np.empty(len(rows), dtype=np.float32)
        for s in range(0, len(rows), self.batch_size):
            text_rows, t = np.unique(rows[s:s + self.batch_size], return_inverse=True)
            image_cols, i = np.unique(cols[s:s + self.batch_size], return_inverse=True)
            out[s:s + len(t)] = itm_scores(self.model, self.encode(text_rows), self.encode(self.gallery.first[image_cols]),
                                           t, i, self.batch_size, self.bf16, self.on_progress)
        return out

    def vectors(self, rows: range) -> tuple[np.ndarray, np.ndarray]:
        """Text vectors of the caption rows ``rows`` and image vectors of the image columns whose
        first caption row is among them -> (len(rows), E), (images, E), a batch at a time."""
        firsts = np.zeros(self.gallery.n, dtype=bool)
        firsts[self.gallery.first] = True
        text, image = [], []
        for s in range(rows.start, rows.stop, self.batch_size):
            batch = np.arange(s, min(s + self.batch_size, rows.stop))
            enc = self.encode(batch)
            t, i = contrastive_vectors(self.model, enc, _subset(enc, np.flatnonzero(firsts[batch])),
                                       self.batch_size, self.bf16)
            text.append(t)
            image.append(i)
        empty = np.zeros((0, self.model.config.retrieval_embedding_size), dtype=np.float32)
        return np.concatenate([empty, *text]), np.concatenate([empty, *image])


def _block_scores(scorer: _Scorer, block: range, text_queries: bool, mode: str, k: int, seed: int,
                  vectors: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, int]:
    """The score rows of the queries ``block`` (caption rows, or image columns when not
    ``text_queries``) against every answer, and the ITM pairs scored: ``random``,
    ``contrastive`` or ``rerank`` (:func:`rerank_matrix` on the block's rows)."""
    g = scorer.gallery
    if mode == "random":  # a generator per query: the same scores however the rows are blocked
        answers = g.m if text_queries else g.n
        return np.stack([np.random.default_rng([seed, int(not text_queries), q]).random(answers) for q in block]), 0
    text, image = vectors
    query, answer = (text, image) if text_queries else (image, text)
    similarity = query[block.start:block.stop] @ answer.T  # (B, E) @ (E, answers) -> (B, answers)
    if mode == "contrastive":
        return similarity, 0

    def itm(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        queries = rows + block.start
        return scorer.pairs(queries, cols) if text_queries else scorer.pairs(cols, queries)

    return rerank_matrix(similarity, k, itm)


def _rank_queries(scorer: _Scorer, queries: range, text_queries: bool, mode: str, k: int, seed: int,
                  vectors: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, int]:
    """The rank of the relevant answer of each query of ``queries`` (:func:`pessimistic_ranks`),
    one block of score rows at a time; and the ITM pairs scored."""
    g = scorer.gallery
    ranks, pairs = [np.zeros(0, dtype=np.int64)], 0
    for start in range(queries.start, queries.stop, scorer.block_rows):
        block = range(start, min(start + scorer.block_rows, queries.stop))
        scores, scored = _block_scores(scorer, block, text_queries, mode, k, seed, vectors)
        relevant = [[g.column[q]] for q in block] if text_queries else [g.by_image[q] for q in block]
        ranks.append(pessimistic_ranks(scores, relevant))
        pairs += scored
    return np.concatenate(ranks), pairs


def _exhaustive_rows(scorer: _Scorer, rows: range, best_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ITM of the caption rows ``rows`` with every image, a (block, M) tile of scores at a
    time: the rows' ranks, and per image column how many of the rows (not its own captions)
    score at least its best own caption's ``best_image`` (its rank, summed over the blocks)."""
    g = scorer.gallery
    ranks, above = [np.zeros(0, dtype=np.int64)], np.zeros(g.m, dtype=np.int64)
    for start in range(rows.start, rows.stop, scorer.block_rows):
        block = np.arange(start, min(start + scorer.block_rows, rows.stop))
        texts = scorer.encode(block)
        scores = np.empty((len(block), g.m), dtype=np.float32)  # (B, M)
        for c in range(0, g.m, scorer.block_rows):
            cols = np.arange(c, min(c + scorer.block_rows, g.m))
            t, i = np.divmod(np.arange(len(block) * len(cols)), len(cols))
            scores[:, cols] = itm_scores(scorer.model, texts, scorer.encode(g.first[cols]), t, i, scorer.batch_size,
                                         scorer.bf16, scorer.on_progress).reshape(len(block), len(cols))
        own = g.column[block]
        ranks.append(pessimistic_ranks(scores, own[:, None]))
        at_least = scores >= best_image  # (B, M)
        at_least[np.arange(len(block)), own] = False  # an image's own captions are not its others
        above += at_least.sum(axis=0)
    return np.concatenate(ranks), above


def _shares(total: int, info: DistInfo) -> list[range]:
    return [row_share(total, rank, info.world_size) for rank in range(info.world_size)]


def _all_vectors(scorer: _Scorer, rows: range, info: DistInfo) -> tuple[np.ndarray, np.ndarray]:
    """Every caption's text vector and every image's image vector, (N, E) and (M, E): each rank
    encodes its share of the items, and the shares are gathered."""
    text, image = on_every_rank(lambda: scorer.vectors(rows), info)
    g, shares = scorer.gallery, _shares(scorer.gallery.n, info)
    images = [int(((g.first >= s.start) & (g.first < s.stop)).sum()) for s in shares]
    return all_gather_rows(text, [len(s) for s in shares], info), all_gather_rows(image, images, info)


def _exhaustive_share(scorer: _Scorer, rows: range, cols: range,
                      info: DistInfo) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Exhaustive ITM ranks of this rank's caption rows and image columns, and the pairs each
    direction scored. Every image's best own caption score comes first (each caption with its
    own image: N pairs in all); then each rank scores its rows against every image once, and
    the per-image counts of captions above that best are summed over the ranks."""
    g = scorer.gallery
    own = np.arange(rows.start, rows.stop)
    mine = on_every_rank(lambda: scorer.pairs(own, g.column[own]), info)
    best_image = np.full(g.m, -np.inf, dtype=np.float32)
    np.maximum.at(best_image, g.column, all_gather_rows(mine, [len(s) for s in _shares(g.n, info)], info))
    t2i, above = on_every_rank(lambda: _exhaustive_rows(scorer, rows, best_image), info)
    above = all_reduce_sum(torch.from_numpy(above).to(info.device), info).cpu().numpy()
    return t2i, above[cols.start:cols.stop], len(rows) * g.m, len(rows)


def _rank_share(scorer: _Scorer, mode: str, k: int, seed: int, info: DistInfo) -> tuple[np.ndarray, np.ndarray,
                                                                                         dict[str, Any]]:
    """This rank's text -> image ranks of its caption rows, image -> text ranks of its image
    columns, and its share for the report."""
    t0 = time.perf_counter()
    g = scorer.gallery
    rows, cols = row_share(g.n, info.rank, info.world_size), row_share(g.m, info.rank, info.world_size)
    if mode == "exhaustive":
        t2i, i2t, pairs, i2t_pairs = _exhaustive_share(scorer, rows, cols, info)
    else:
        vectors = None if mode == "random" else _all_vectors(scorer, rows, info)
        (t2i, pairs), (i2t, i2t_pairs) = on_every_rank(
            lambda: (_rank_queries(scorer, rows, True, mode, k, seed, vectors),
                     _rank_queries(scorer, cols, False, mode, k, seed, vectors)), info)
    share = {"rank": info.rank, "rows": [rows.start, rows.stop], "handled": len(t2i),
             "columns": [cols.start, cols.stop], "columns_handled": len(i2t), "pairs_scored": pairs,
             "image_to_text_pairs_scored": i2t_pairs, "seconds": round(time.perf_counter() - t0, 3)}
    return t2i, i2t, share


def _check_shares(shares: list[dict[str, Any]], gallery: Gallery) -> None:
    """Raise unless the ranks' caption rows and image columns each cover the split once."""
    columns = [{"rank": s["rank"], "rows": s["columns"], "handled": s["columns_handled"]} for s in shares]
    problems = check_row_shares(shares, gallery.n) + check_row_shares(columns, gallery.m)
    if problems:
        raise TaommError(f"the ranks' shares do not cover the split once: {'; '.join(problems)}")


def pairs_to_score(gallery: Gallery, mode: str, k: int, rows: range, cols: range) -> int:
    """The ITM pairs ``mode`` scores for the caption rows ``rows`` and image columns ``cols``."""
    if mode == "exhaustive":
        return len(rows) * (gallery.m + 1)
    if mode == "rerank":
        return len(rows) * min(k, gallery.m) + len(cols) * min(k, gallery.n)
    return 0


def evaluate(model: torch.nn.Module, store: Any, tokenizer: TitleTokenizer, ordinals: Sequence[int], mode: str,
             k: int = 16, batch_size: int = 256, bf16: bool = True, seed: int = 0,
             on_progress: Callable[[int], None] | None = None, info: DistInfo | None = None,
             progress: Progress | None = None, block_rows: int = BLOCK_ROWS) -> dict[str, Any]:
    """Text -> image R@1/5/10 (and image -> text) over the items ``ordinals``: each title is
    a query, its own image the relevant answer (captions of one photo, ``IMAGE#K``, share a
    single gallery image, as in Flickr30K's 5 captions per image). Modes: ``exhaustive`` (ITM
    on every pair), ``rerank`` (the top ``k`` images by contrastive vectors, reranked by ITM),
    ``contrastive`` (the vectors alone), ``random`` (a random ranking, the floor).

    Streamed: items are read from the store a batch at a time; what is kept is the (N, E)
    contrastive vectors and one block of ``block_rows`` score rows. Under torchrun (``info``,
    its model on ``info.device``) each rank scores a contiguous share of the caption rows and
    of the image columns; every rank returns the result, with each rank's share under
    ``ranks``. ``progress(description, total)`` shows the main process's ITM pairs."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    info = info or DistInfo()
    t0 = time.perf_counter()
    cfg = model.config
    gallery = on_every_rank(lambda: read_gallery(store, ordinals, tokenizer, cfg.max_text_tokens, cfg.max_regions), info)
    scorer = _Scorer(model, store, tokenizer, gallery, batch_size, bf16, block_rows, on_progress)
    bar = nullcontext(None)
    if progress is not None and info.is_main and mode in ITM_MODES:
        rows, cols = row_share(gallery.n, 0, info.world_size), row_share(gallery.m, 0, info.world_size)
        bar = progress(f"scoring ({mode})", pairs_to_score(gallery, mode, k, rows, cols))
    with bar as advance:
        scorer.on_progress = advance or on_progress
        t2i, i2t, share = _rank_share(scorer, mode, k, seed, info)
    shares = all_gather_json(share, info)
    on_every_rank(lambda: _check_shares(shares, gallery) if info.is_main else None, info)
    t2i = all_gather_rows(t2i, [len(s) for s in _shares(gallery.n, info)], info)
    i2t = all_gather_rows(i2t, [len(s) for s in _shares(gallery.m, info)], info)
    result: dict[str, Any] = {**recall_from_ranks(t2i), "mode": mode,
                              "pairs_scored": sum(s["pairs_scored"] for s in shares),
                              "seconds": round(time.perf_counter() - t0, 3), "items": gallery.n, "images": gallery.m}
    if mode == "rerank":
        result["k"] = k
    if mode in ITM_MODES:  # exhaustive: each caption with its own image, to rank the images' captions
        result["image_to_text_pairs_scored"] = sum(s["image_to_text_pairs_scored"] for s in shares)
    result["image_to_text"] = recall_from_ranks(i2t)
    result["ranks"] = shares
    return result
