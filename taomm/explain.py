"""Why a search hit matches its query: the item's photo regions, each with its box, detector
class and a match score to the query, and the pair's ITM score (``SearchEngine.explain``).

Region score: one joint forward of (query, photo) through the retrieval model; each region's
final image-stream state (the image extractor's output at that region), projected by the
contrastive head's ``image_proj`` and normalised, and its cosine with the query's text vector
(``encode_text``, the vector search itself uses). Why: ``image_proj`` maps into the space where
the vector search matched the query against photos (there it projects the image [CLS], which
starts as the mean of the regions), so a region scores high when it alone would be found by
the query; the states are those of the forward that gives the ITM score, after the regions
attended to the query in the interaction layers; a cosine is bounded and compares across
regions and queries. Attention weights would not do: the last layers are the separate
extractors, where the text [CLS] does not attend to regions at all (only the interaction
layers mix the two), scaled_dot_product_attention returns no weights, and softmax weights are
relative (they sum to one over both modalities whatever the match).

torch is imported when an explanation runs, not with this module (``taomm search`` stays quick).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from taomm.errors import TaommError

if TYPE_CHECKING:
    from taomm.search import SearchEngine


def explain_match(engine: SearchEngine, query: str, item_id: str) -> dict[str, Any]:
    """Why ``item_id`` matches ``query`` (see the module docstring for the region score).

    Returns ``regions``: those the model sees (the store's first ``max_regions``, by
    decreasing detector confidence; ``regions_total`` counts all), each ``{"index",
    "box", "box_pixels", "class_id", "class_name", "confidence", "score"}`` where ``box``
    is ``x1, y1, x2, y2`` as fractions (0-1) of the photo's width and height, so it draws
    over the image at any displayed size, and ``box_pixels`` the same in pixels of the
    ``width`` x ``height`` photo; ``class_id`` -1 (name None) when the detector gave no
    class. ``best_region``: the index of the highest score (None without regions).
    ``itm_score``: the pair's ITM match logit (what ITM rerank ranks by). A TaommError for
    an unknown item, a QueryError for a query that cannot be searched."""
    import torch

    row = engine.index.rows.get(item_id)
    if row is None:
        raise TaommError(f"unknown item id {item_id!r} (not in the index {engine.index.path})")
    with torch.no_grad():
        ids = engine.query_ids(query)
        store = engine.store
        try:
            ordinal = store.ordinal(item_id)
        except KeyError:
            path = engine.index.manifest.get("store", {}).get("path")
            raise TaommError(f"item {item_id!r} is not in the feature store {path}") from None
        item = store[ordinal]
        itm, regions = region_vectors(engine, ids, ordinal, item.num_regions)
        text = engine.encode_ids([ids])[0].astype(np.float32)  # (E,) unit
    rows = region_rows(item, regions @ text, list(store.meta.classes))  # scores: (n,) cosines
    meta = engine.index.items[row]
    return {"query": query, "item_id": item_id, "title": meta.get("title", ""), "width": item.width,
            "height": item.height, "itm_score": round(itm, 6),
            "best_region": int(np.argmax([r["score"] for r in rows])) if rows else None,
            "category": meta.get("category"), "regions_total": item.num_regions, "regions": rows}


def region_vectors(engine: SearchEngine, ids: list[int], ordinal: int, num_regions: int) -> tuple[float, np.ndarray]:
    """One joint forward of the query's token ids and the store item ``ordinal``: the pair's
    ITM logit, and the unit vectors (n, E) of the n regions the model sees (the image-stream
    states projected by ``image_proj``)."""
    import torch
    import torch.nn.functional as F

    from taomm.device import autocast
    from taomm.retrieval import encode_items

    model, device = engine.model, engine.device
    cfg = model.config
    enc = encode_items(engine.store, [ordinal], engine.tokenizer, max_tokens=engine.max_text,
                       max_regions=cfg.max_regions)
    n = min(num_regions, cfg.max_regions)
    input_ids = torch.tensor([ids], device=device)  # (1, T)
    with autocast(device, engine.bf16):
        out = model(input_ids, torch.ones_like(input_ids, dtype=torch.bool), enc.region_features.to(device),
                    enc.region_boxes.to(device), enc.region_mask.to(device))
        states = out.backbone.image_hidden[0, 1:n + 1]  # (n, H): the regions, without the image [CLS]
        regions = F.normalize(model.contrastive.image_proj(states).float(), dim=-1).cpu().numpy()  # (n, E)
    return float(out.itm_logits.float()[0]), regions


def region_rows(item: Any, scores: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    """One row per scored region of the store ``item``: its box as fractions of the photo and in
    pixels, its detector class and confidence, and its ``score``."""
    w, h = item.width, item.height
    rows = []
    for i, score in enumerate(scores):
        x1, y1, x2, y2 = (float(v) for v in item.boxes[i])
        label = int(item.labels[i])
        rows.append({"index": i, "box": [round(x1 / w, 6), round(y1 / h, 6), round(x2 / w, 6), round(y2 / h, 6)],
                     "box_pixels": [round(v, 2) for v in (x1, y1, x2, y2)], "class_id": label,
                     "class_name": classes[label] if 0 <= label < len(classes) else None,
                     "confidence": round(float(item.scores[i]), 6), "score": round(float(score), 6)})
    return rows
