"""Search and recommendation over an exported index (DESIGN.md sections 1 and 9).

- search: the query goes through the title pipeline (normalise, Chinese check, spam filter,
  segmentation) and the tokenizer, the text encoder gives its vector (the model in torch, or
  its ONNX export in onnxruntime: ``SearchEngine.choose_text_encoder``), faiss recalls
  candidates among the item vectors (photo and title together: a listing is what a shopper
  finds; ``target="image"`` searches the photos alone), and ITM reranks the top K (the store
  supplies their regions). ITM judges a query against a photo, not a title: it reranks photo
  searches by default and listing searches only when asked (``DEFAULT_RERANK``; on the demo
  catalog it lowers the listings' precision@5, README);
- recommend: the nearest items by the cross-modal item vector, the item itself excluded;
- facets: an item's category is its main region's class (recorded by the index export);
  a search can keep one category, and counts the categories of the query's nearest items;
- explain: an item's regions with their classes and a model score of each against the query.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from taomm.device import resolve_device
from taomm.errors import OptionError, TaommError
from taomm.explain import explain_match
from taomm.index import ItemIndex, open_index, sha256_file
from taomm.milvus_index import MilvusIndex
from taomm.query_encoder import TorchTextEncoder

MAX_QUERY_CHARS = 64
# Candidates ITM reranks when a search does not say, by target: photos yes; listings no, as
# the item vector has seen the title that ITM does not.
DEFAULT_RERANK = {"image": 16, "item": 0}
ENCODERS = ("auto", "torch", "onnx")  # query encoders: SearchEngine.choose_text_encoder
# Facets count categories over this many nearest items of the query's vector search.
FACET_DEPTH = 100
# A category-filtered search looks this deep at most (also faiss's top-k limit on a GPU).
MAX_FILTER_DEPTH = 2048


class QueryError(TaommError):
    """A query that cannot be searched (empty after cleaning, not Chinese, spam, too long)."""


@dataclass
class Hit:
    rank: int
    item_id: str
    title: str
    image: str | None  # absolute path of the item's image, when known
    score: float

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "item_id": self.item_id, "title": self.title, "image": self.image,
                "score": round(self.score, 6)}


@dataclass
class SearchRequest:
    """One search of a batch (``SearchEngine.search_many``): ``search_with_facets``'s arguments."""

    query: str
    k: int = 10
    rerank: int | None = None
    target: str = "item"
    category: str | int | None = None


# A search's answer: its hits, and its facets (None for an index without categories).
SearchResult = tuple[list[Hit], list[dict[str, Any]] | None]


def _no_grad(fn: Any) -> Any:
    """``torch.no_grad()`` for a method, importing torch only when the method runs: a search
    with the ONNX encoder and no rerank never imports it (about 1.5 s of a CLI call)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)
    return wrapper


class SearchEngine:
    """The model, the verified index and (for reranking) the store, loaded once."""

    def __init__(self, index_path: str | os.PathLike[str], device: str | None = None, bf16: bool = True,
                 encoder: str = "auto") -> None:
        """``encoder``: what encodes queries (``ENCODERS``), see ``choose_text_encoder``."""
        from taomm.model.config import VOCAB_NAME, WEIGHTS_NAME, InterBertConfig
        from taomm.text.tokenizer import TitleTokenizer

        self.index: ItemIndex | MilvusIndex = open_index(index_path)  # index_path: a folder or a Milvus URI
        manifest = self.index.manifest
        model_dir = Path(manifest["model"]["path"])
        weights = model_dir / WEIGHTS_NAME
        if not weights.is_file():
            raise TaommError(f"the index's model {model_dir} is gone: re-run `taomm export-embeddings`")
        if sha256_file(weights) != manifest["model"]["sha256"]:
            raise TaommError(f"{weights} is not the model the index was exported with: re-run "
                             "`taomm export-embeddings`")
        self.device_name = resolve_device(device)  # cpu without importing torch on a machine with no GPU
        self.bf16 = bf16
        self._model_dir = model_dir
        self._model: Any = None
        self._lock = threading.Lock()  # lazy loading from several server threads
        self.tokenizer = TitleTokenizer(model_dir / VOCAB_NAME)
        self.max_text = InterBertConfig.from_dict(manifest["model"]["config"]).max_text_tokens  # as trained
        if encoder not in ENCODERS:
            raise TaommError(f"the query encoder must be one of {', '.join(ENCODERS)}, not {encoder!r}")
        self._encoder_choice = encoder
        # a chosen encoder is built now (its errors surface at once); auto's on the first query
        # (recommend reads the stored vectors and never encodes text)
        self._text_encoder: Any = self.choose_text_encoder(encoder) if encoder != "auto" else None
        self.image_root = Path(manifest["image_root"]) if manifest.get("image_root") else None
        self._store_path = manifest.get("store", {}).get("path")
        self._store: Any = None
        self._cleaner: Any = None
        # A hit's image path, resolved once per item: resolving (a few syscalls a path) took
        # most of a batched search's time. The /images endpoint still checks each request.
        self._hit_image = functools.lru_cache(maxsize=1 << 16)(self.image_path)

    # --- pieces ------------------------------------------------------------------------

    @property
    def device(self) -> Any:
        """The torch device the model runs on."""
        import torch

        return torch.device(self.device_name)

    @property
    def text_encoder(self) -> Any:
        """What encodes queries (``choose_text_encoder``), built on first use."""
        if self._text_encoder is None:
            encoder = self.choose_text_encoder(self._encoder_choice)
            with self._lock:
                self._text_encoder = self._text_encoder or encoder
        return self._text_encoder

    @text_encoder.setter
    def text_encoder(self, encoder: Any) -> None:
        self._text_encoder = encoder

    @property
    def model(self) -> Any:
        """The retrieval model, loaded on first use (the torch encoder, rerank, explain):
        a search with the ONNX encoder and no rerank needs only the index and the tokenizer."""
        with self._lock:
            if self._model is None:
                from taomm.model import InterBertForRetrieval

                self._model = InterBertForRetrieval.from_pretrained(self._model_dir).to(self.device).eval()
            return self._model

    def choose_text_encoder(self, encoder: str) -> Any:
        """The query encoder: ``onnx``, the index's ``text_encoder.onnx`` in onnxruntime (a
        TaommError when the index has none or onnxruntime is missing); ``torch``, the model;
        ``auto``, onnx when the manifest lists the file, onnxruntime imports and the device is
        the CPU (2x faster than torch for one query there, benchmarks/onnx_encoder.py), else
        torch. ``open_index`` has checked the file's sha256; the encoder checks the bytes it
        loads again."""
        from taomm.onnx_text import ONNX_NAME, OnnxTextEncoder, onnxruntime_available

        if encoder not in ENCODERS:
            raise TaommError(f"the query encoder must be one of {', '.join(ENCODERS)}, not {encoder!r}")
        digest = self.index.manifest["files"].get(ONNX_NAME)
        if encoder == "auto":
            encoder = "onnx" if digest and self.device_name == "cpu" and onnxruntime_available() else "torch"
        if encoder == "torch":
            return TorchTextEncoder(self.model, self.device, self.bf16)
        if digest is None and isinstance(self.index, MilvusIndex):
            raise OptionError(f"the Milvus index {self.index.path} has no ONNX query encoder (they live in index "
                              "folders): search it with {encoder=torch}", "encoder=torch")
        if digest is None:
            raise OptionError(f"the index {self.index.path} has no {ONNX_NAME}: export it again with the ONNX "
                              "query encoder ({onnx=True})", "onnx=True")
        return OnnxTextEncoder(self.index.path / ONNX_NAME, sha256=digest)

    @property
    def cleaner(self) -> Any:
        with self._lock:
            if self._cleaner is None:
                from taomm.text.clean import TitleCleaner

                self._cleaner = TitleCleaner()
            return self._cleaner

    @property
    def store(self) -> Any:
        with self._lock:
            if self._store is None:
                from taomm.datasets.sharded import SerialStore, open_store

                if not self._store_path or not Path(self._store_path).exists():
                    raise OptionError(f"reranking needs the feature store {self._store_path}, which is gone "
                                      "(search with {rerank=0})", "rerank=0")
                self._store = SerialStore(open_store(self._store_path))
            return self._store

    def clean_query(self, query: str) -> list[str]:
        """The query's words after the title pipeline, or a QueryError saying why not."""
        if len(query) > MAX_QUERY_CHARS:
            raise QueryError(f"the query is longer than {MAX_QUERY_CHARS} characters")
        cleaned = self.cleaner(query)
        if not cleaned.kept:
            reason = cleaned.reason or ""
            if reason == "empty":
                raise QueryError("the query is empty after cleaning")
            if reason == "no_chinese":
                raise QueryError("the query has no Chinese character (this index holds Chinese titles)")
            if reason.startswith("spam:"):
                raise QueryError(f"the query looks like spam ({reason.split(':', 1)[1]}) and is not searched")
            raise QueryError(f"the query was rejected ({reason})")
        return list(cleaned.words)

    def image_path(self, row: int) -> str | None:
        from taomm.datasets.images import resolve_image_path

        rel = self.index.items[row].get("image")
        if not rel or self.image_root is None:
            return None
        try:
            return str(resolve_image_path(self.image_root, rel))
        except Exception:  # outside the root or odd: never served
            return None

    def _hit(self, rank: int, row: int, score: float) -> Hit:
        meta = self.index.items[row]
        return Hit(rank, meta["item_id"], meta.get("title", ""), self._hit_image(row), float(score))

    # --- search and recommend ------------------------------------------------------------

    def search(self, query: str, k: int = 10, rerank: int | None = None, target: str = "item",
               category: int | None = None) -> list[Hit]:
        """The ``k`` best items for ``query``; the top ``rerank`` candidates of the vector
        search are reordered by ITM (0: vector search only; None: ``DEFAULT_RERANK`` of the
        target). ``target``: the vectors searched, ``image`` (the photo alone) or ``item``
        (photo and title together). Scores: the ITM match logit for reranked items, the
        cosine similarity of the vectors otherwise. ``category``: only items of that category
        id (``resolve_category``)."""
        if target not in ("image", "item"):
            raise TaommError(f"search target must be image or item, not {target!r}")
        ids = self.query_ids(query)
        return self.search_encoded(ids, self.encode_ids([ids]), k, rerank, target, category)

    def search_encoded(self, ids: list[int], vector: np.ndarray, k: int = 10, rerank: int | None = None,
                       target: str = "item", category: int | None = None) -> list[Hit]:
        """``search`` for a query already encoded: its token ids and its (1, E) vector."""
        if target not in ("image", "item"):
            raise TaommError(f"search target must be image or item, not {target!r}")
        if rerank is None:
            rerank = DEFAULT_RERANK[target]
        scores, rows = self._candidates(vector, target, max(k, rerank), category)
        logits = self.rerank_many([(ids, rows[:rerank])])[0] if rerank > 0 and len(rows) else None
        return self._ranked(scores, rows, logits, k)

    def _ranked(self, scores: np.ndarray, rows: np.ndarray, logits: np.ndarray | None, k: int) -> list[Hit]:
        """The ``k`` first hits of candidates ``rows`` by vector ``scores``, the first
        ``len(logits)`` of them reordered by their ITM ``logits`` (None: no rerank)."""
        if logits is not None:
            top = rows[:len(logits)]
            order = np.argsort(-logits, kind="stable")
            ranked = [(int(top[i]), float(logits[i])) for i in order]
            ranked += [(int(r), float(s)) for r, s in zip(rows[len(top):], scores[len(top):], strict=True)]
        else:
            ranked = [(int(r), float(s)) for r, s in zip(rows, scores, strict=True)]
        return [self._hit(i + 1, row, score) for i, (row, score) in enumerate(ranked[:k])]

    def encode_query(self, query: str) -> tuple[Any, np.ndarray]:
        """A query's token ids (1, T) and its text vector (1, E), as search uses them."""
        import torch

        ids = self.query_ids(query)
        return torch.tensor([ids], device=self.device), self.encode_ids([ids])

    def query_ids(self, query: str) -> list[int]:
        """A query's token ids as the text encoder takes them: [CLS] words [SEP]
        (a QueryError when the query cannot be searched)."""
        ids = self.tokenizer.encode_words(self.clean_query(query)).ids[: self.max_text - 2]
        return [self.tokenizer.cls_id, *ids, self.tokenizer.sep_id]

    def encode_ids(self, batch: list[list[int]]) -> np.ndarray:
        """Text vectors (B, E) of token id lists, padded together into one forward pass."""
        width = max(len(ids) for ids in batch)
        input_ids = np.full((len(batch), width), self.tokenizer.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=bool)
        for i, ids in enumerate(batch):
            input_ids[i, :len(ids)], mask[i, :len(ids)] = ids, True
        return self.text_encoder(input_ids, mask)

    def _itm(self, input_ids: Any, rows: np.ndarray) -> np.ndarray:
        """ITM logits (N,) of one query's token ids (1, T) against the items at ``rows``."""
        return self.rerank_many([(input_ids[0].tolist(), rows)])[0]

    @_no_grad
    def rerank_many(self, pairs: list[tuple[list[int], np.ndarray]], chunk: int = 512) -> list[np.ndarray]:
        """ITM logits of several queries against their candidates: ``pairs`` of (query token
        ids, candidate rows) -> per pair a (len(rows),) float32 array, the logits a rerank of
        that query alone gives. The pairs of the same query length whose candidates pad to the
        same number of regions go through the model together (``chunk`` candidates a forward
        pass): padding them to a common shape would cost compute for nothing (the pairs are
        short: a few regions and a few words). In fp32 a logit moves by ~1e-7 against one query's rerank;
        in bf16 by up to ~1e-3 (any change of batch shape does that), which can swap two
        candidates whose logits are that close."""
        import torch

        from taomm.device import autocast
        from taomm.retrieval import encode_regions

        store, max_regions = self.store, self.model.config.max_regions
        encoded = [encode_regions([store[store.ordinal(self.index.item_ids[int(r)])] for r in rows], max_regions)
                   if len(rows) else None for _, rows in pairs]  # per pair: features, boxes, mask
        groups: dict[tuple[int, int], list[int]] = {}  # (query length, regions padded to) -> pairs
        for p, regions in enumerate(encoded):
            if regions is not None:
                groups.setdefault((len(pairs[p][0]), regions[0].shape[1]), []).append(p)
        out = [np.zeros(0, np.float32) for _ in pairs]
        for members in groups.values():
            feats, boxes, rmask = (torch.cat(parts) for parts in zip(*(encoded[p] for p in members), strict=True))
            input_ids = torch.cat([torch.tensor([pairs[p][0]]).expand(len(pairs[p][1]), -1) for p in members])  # (P, T)
            mask = torch.ones_like(input_ids, dtype=torch.bool)
            logits = []
            for start in range(0, len(feats), chunk):
                part = slice(start, start + chunk)
                with autocast(self.device, self.bf16):
                    result = self.model(*(t[part].to(self.device) for t in (input_ids, mask, feats, boxes, rmask)))
                logits.append(result.itm_logits.float().cpu().numpy())  # (chunk,)
            split = np.split(np.concatenate(logits), np.cumsum([len(pairs[p][1]) for p in members])[:-1])
            for p, part in zip(members, split, strict=True):
                out[p] = part
        return out

    def recommend(self, item_id: str, k: int = 5) -> list[Hit]:
        """The ``k`` items nearest to ``item_id`` by the cross-modal item vector."""
        row = self.index.rows.get(item_id)
        if row is None:
            raise TaommError(f"unknown item id {item_id!r} (not in the index {self.index.path})")
        vector = self.index.vector("item", row)
        scores, rows = self.index.search("item", vector, k + 1)
        found = [(int(r), float(s)) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0 and r != row]
        return [self._hit(i + 1, r, s) for i, (r, s) in enumerate(found[:k])]

    # --- facets ----------------------------------------------------------------------------

    @functools.cached_property
    def categories(self) -> np.ndarray | None:
        """Per index row its category id (-1: none), or None for an index exported before
        categories were recorded (then no facets and no category filter)."""
        return self.index.category_ids()

    @functools.cached_property
    def category_names(self) -> dict[int, str]:
        """Category id -> name: the index's taxonomy, else the names its items carry."""
        classes = (self.index.manifest.get("taxonomy") or {}).get("classes")
        if classes:
            return dict(enumerate(classes))
        return {it["category"]["id"]: it["category"]["name"] for it in self.index.items if it.get("category")}

    def resolve_category(self, value: str | int) -> int:
        """A category id from its id or its name (case-insensitive); a QueryError when the
        index holds no categories or does not know this one."""
        if self.categories is None:
            raise QueryError("this index holds no categories (exported before they were recorded): "
                             "re-run `taomm export-embeddings`")
        text = str(value).strip()
        if re.fullmatch(r"[0-9]{1,6}", text) and int(text) in self.category_names:
            return int(text)
        by_name = {name.lower(): i for i, name in self.category_names.items()}
        if text.lower() in by_name:
            return by_name[text.lower()]
        raise QueryError(f"unknown category {text[:64]!r} (give a category id or name)")

    def _candidates(self, vector: np.ndarray, target: str, depth: int,
                    category: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the ``depth`` nearest items by decreasing vector score; with
        ``category``, the nearest ``depth`` of that category: the vector search goes 4x
        deeper a round until it has them, has seen every item or reaches
        ``MAX_FILTER_DEPTH`` (a category rarer than that near the query returns fewer)."""
        if category is not None and self.categories is None:
            raise QueryError("this index holds no categories: re-run `taomm export-embeddings`")
        wanted, n = depth, len(self.index)
        while True:
            scores, rows = self.index.search(target, vector, depth)
            found = rows[0] >= 0
            scores, rows = scores[0][found], rows[0][found]
            if category is None:
                return scores, rows
            mine = self.categories[rows] == category
            if mine.sum() >= wanted or depth >= min(n, MAX_FILTER_DEPTH):
                return scores[mine][:wanted], rows[mine][:wanted]
            depth = min(depth * 4, MAX_FILTER_DEPTH)

    def facets(self, vector: np.ndarray, target: str = "item", depth: int = FACET_DEPTH) -> list[dict[str, Any]] | None:
        """Categories of the query's ``depth`` nearest items by vector score, most frequent
        first: ``[{"category": id, "name", "count"}]`` (items without a category are not
        counted). Counted before any category filter or ITM rerank, so the counts stay put
        when a category is chosen; one more vector search, no model call. None for an index
        without categories."""
        if self.categories is None:
            return None
        _, rows = self._candidates(vector, target, depth)
        ids, counts = np.unique(self.categories[rows], return_counts=True)
        pairs = sorted(((int(c), int(m)) for c, m in zip(ids, counts, strict=True) if c >= 0),
                       key=lambda p: (-p[1], p[0]))
        return [{"category": c, "name": self.category_names.get(c, str(c)), "count": m} for c, m in pairs]

    def search_with_facets(self, query: str, k: int = 10, rerank: int | None = None, target: str = "item",
                           category: str | int | None = None) -> tuple[list[Hit], list[dict[str, Any]] | None]:
        """``search`` restricted to ``category`` (an id or a name, ``resolve_category``;
        None: every item), and the query's ``facets``; the query is encoded once for both
        (``search_many`` of this one request)."""
        result = self.search_many([SearchRequest(query, k, rerank, target, category)])[0]
        if isinstance(result, TaommError):
            raise result
        return result

    def search_many(self, requests: list[SearchRequest]) -> list[SearchResult | TaommError]:
        """``search_with_facets`` of several requests at once: per request the result it
        gives alone, or in its place the TaommError it raises. One forward pass of the text
        encoder encodes every query, one ITM pass (``rerank_many``) scores every reranked
        candidate. The vector searches stay one per request: faiss answers one in
        microseconds on a flat index, and searching a batch at one common depth could change
        an approximate index's answer to a request of another depth."""
        out: list[SearchResult | TaommError | None] = [None] * len(requests)
        ready: list[tuple[int, list[int], int | None]] = []  # (request, token ids, category id)
        for i, req in enumerate(requests):
            try:
                if req.target not in ("image", "item"):
                    raise TaommError(f"search target must be image or item, not {req.target!r}")
                ids = self.query_ids(req.query)
                ready.append((i, ids, None if req.category is None else self.resolve_category(req.category)))
            except TaommError as exc:
                out[i] = exc
        vectors = self.encode_ids([ids for _, ids, _ in ready]) if ready else None  # (B, E)
        recalled = []  # (request, token ids, scores, rows, rerank, facets)
        for j, (i, ids, category) in enumerate(ready):
            req, vector = requests[i], vectors[j:j + 1]
            rerank = DEFAULT_RERANK[req.target] if req.rerank is None else req.rerank
            try:
                scores, rows = self._candidates(vector, req.target, max(req.k, rerank), category)
                recalled.append((i, ids, scores, rows, rerank, self.facets(vector, req.target)))
            except TaommError as exc:
                out[i] = exc
        asks = [r for r in recalled if r[4] > 0 and len(r[3])]
        logits: dict[int, np.ndarray] = {}
        try:
            found = self.rerank_many([(ids, rows[:rerank]) for _, ids, _, rows, rerank, _ in asks])
            logits = {r[0]: x for r, x in zip(asks, found, strict=True)}
        except TaommError as exc:  # e.g. the store is gone: only the reranked requests fail
            for r in asks:
                out[r[0]] = exc
        for i, _, scores, rows, _, facets in recalled:
            if out[i] is None:
                out[i] = (self._ranked(scores, rows, logits.get(i), requests[i].k), facets)
        return out  # type: ignore[return-value]  # every entry is set by now

    # --- explain ---------------------------------------------------------------------------

    def explain(self, query: str, item_id: str) -> dict[str, Any]:
        """Why ``item_id`` matches ``query``: its photo's regions, each with a match score to the
        query, and the pair's ITM score (``taomm.explain.explain_match``)."""
        return explain_match(self, query, item_id)
