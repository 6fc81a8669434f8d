"""Search and recommendation over an exported index (DESIGN.md sections 1 and 9).

- search: the query goes through the title pipeline (normalise, Chinese check, spam filter,
  segmentation) and the tokenizer, the text encoder gives its vector, faiss recalls
  candidates among the item vectors (photo and title together: a listing is what a shopper
  finds; ``target="image"`` searches the photos alone), and ITM reranks the top K (the store
  supplies their regions). ITM judges a query against a photo, not a title: it reranks photo
  searches by default and listing searches only when asked (``DEFAULT_RERANK``; on the demo
  catalog it lowers the listings' precision@5, README);
- recommend: the nearest items by the cross-modal item vector, the item itself excluded.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taomm.device import autocast
from taomm.errors import TaommError
from taomm.index import ItemIndex, open_index, sha256_file

MAX_QUERY_CHARS = 64
# Candidates ITM reranks when a search does not say, by target: photos yes; listings no, as
# the item vector has seen the title that ITM does not.
DEFAULT_RERANK = {"image": 16, "item": 0}


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


class TorchTextEncoder:
    """The retrieval model's text tower in torch: token ids and mask (B, T) -> unit vectors (B, E)."""

    backend = "torch"

    def __init__(self, model: Any, device: torch.device, bf16: bool) -> None:
        self.model, self.device, self.bf16 = model, device, bf16

    @torch.no_grad()
    def __call__(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        ids = torch.from_numpy(input_ids).to(self.device)
        with autocast(self.device, self.bf16):
            vectors = self.model.encode_text(ids, torch.from_numpy(mask).to(self.device))
        return vectors.float().cpu().numpy()


class SearchEngine:
    """The model, the verified index and (for reranking) the store, loaded once."""

    def __init__(self, index_path: str | os.PathLike[str], device: str | None = None, bf16: bool = True) -> None:
        from taomm.model import InterBertForRetrieval
        from taomm.model.pretrained import VOCAB_NAME, WEIGHTS_NAME
        from taomm.text.tokenizer import TitleTokenizer

        self.index: ItemIndex = open_index(index_path)
        manifest = self.index.manifest
        model_dir = Path(manifest["model"]["path"])
        weights = model_dir / WEIGHTS_NAME
        if not weights.is_file():
            raise TaommError(f"the index's model {model_dir} is gone: re-run `taomm export-embeddings`")
        if sha256_file(weights) != manifest["model"]["sha256"]:
            raise TaommError(f"{weights} is not the model the index was exported with: re-run "
                             "`taomm export-embeddings`")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.bf16 = bf16
        self.model = InterBertForRetrieval.from_pretrained(model_dir).to(self.device).eval()
        self.tokenizer = TitleTokenizer(model_dir / VOCAB_NAME)
        self.max_text = min(40, self.model.config.max_position_embeddings)
        self.text_encoder: Any = TorchTextEncoder(self.model, self.device, bf16)
        self.image_root = Path(manifest["image_root"]) if manifest.get("image_root") else None
        self._store_path = manifest.get("store", {}).get("path")
        self._store: Any = None
        self._cleaner: Any = None
        self._lock = threading.Lock()  # lazy loading from several server threads

    # --- pieces ------------------------------------------------------------------------

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
                from taomm.datasets.sharded import open_store

                if not self._store_path or not Path(self._store_path).exists():
                    raise TaommError(f"reranking needs the feature store {self._store_path}, which is gone "
                                     "(use --no-rerank)")
                self._store = open_store(self._store_path)
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
        return Hit(rank, meta["item_id"], meta.get("title", ""), self.image_path(row), float(score))

    # --- search and recommend ------------------------------------------------------------

    @torch.no_grad()
    def search(self, query: str, k: int = 10, rerank: int | None = None, target: str = "item") -> list[Hit]:
        """The ``k`` best items for ``query``; the top ``rerank`` candidates of the vector
        search are reordered by ITM (0: vector search only; None: ``DEFAULT_RERANK`` of the
        target). ``target``: the vectors searched, ``image`` (the photo alone) or ``item``
        (photo and title together). Scores: the ITM match logit for reranked items, the
        cosine similarity of the vectors otherwise."""
        if target not in ("image", "item"):
            raise TaommError(f"search target must be image or item, not {target!r}")
        ids = self.query_ids(query)
        return self.search_encoded(ids, self.encode_ids([ids]), k, rerank, target)

    @torch.no_grad()
    def search_encoded(self, ids: list[int], vector: np.ndarray, k: int = 10, rerank: int | None = None,
                       target: str = "item") -> list[Hit]:
        """``search`` for a query already encoded: its token ids and its (1, E) vector."""
        if target not in ("image", "item"):
            raise TaommError(f"search target must be image or item, not {target!r}")
        if rerank is None:
            rerank = DEFAULT_RERANK[target]
        input_ids = torch.tensor([ids], device=self.device)
        scores, rows = self.index.search(target, vector, max(k, rerank))
        scores, rows = scores[0][rows[0] >= 0], rows[0][rows[0] >= 0]
        if rerank > 0 and len(rows):
            top = rows[:rerank]
            logits = self._itm(input_ids, top)
            order = np.argsort(-logits, kind="stable")
            ranked = [(int(top[i]), float(logits[i])) for i in order]
            ranked += [(int(r), float(s)) for r, s in zip(rows[rerank:], scores[rerank:], strict=True)]
        else:
            ranked = [(int(r), float(s)) for r, s in zip(rows, scores, strict=True)]
        return [self._hit(i + 1, row, score) for i, (row, score) in enumerate(ranked[:k])]

    def encode_query(self, query: str) -> tuple[torch.Tensor, np.ndarray]:
        """A query's token ids (1, T) and its text vector (1, E), as search uses them."""
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

    def _itm(self, input_ids: torch.Tensor, rows: np.ndarray) -> np.ndarray:
        from taomm.retrieval import encode_items

        store = self.store
        ordinals = [store.ordinal(self.index.item_ids[int(r)]) for r in rows]
        cfg = self.model.config
        enc = encode_items(store, ordinals, self.tokenizer, max_regions=cfg.max_regions)
        n = len(ordinals)
        with autocast(self.device, self.bf16):
            out = self.model(input_ids.expand(n, -1), torch.ones_like(input_ids, dtype=torch.bool).expand(n, -1),
                             enc.region_features.to(self.device), enc.region_boxes.to(self.device),
                             enc.region_mask.to(self.device))
        return out.itm_logits.float().cpu().numpy()

    def recommend(self, item_id: str, k: int = 5) -> list[Hit]:
        """The ``k`` items nearest to ``item_id`` by the cross-modal item vector."""
        row = self.index.rows.get(item_id)
        if row is None:
            raise TaommError(f"unknown item id {item_id!r} (not in the index {self.index.path})")
        vector = self.index.vectors["item"][row: row + 1].astype(np.float32)
        scores, rows = self.index.search("item", vector, k + 1)
        found = [(int(r), float(s)) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0 and r != row]
        return [self._hit(i + 1, r, s) for i, (r, s) in enumerate(found[:k])]
