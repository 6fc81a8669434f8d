"""The demo catalog: a synthetic Taobao-like product collection generated on the spot.

No real product data or pretrained weights can be downloaded, so taomm draws its own:
every item is a product of the ``taobao33`` taxonomy drawn with Pillow (a category shape
filled with a colour and a pattern, sometimes with a visible style such as 荷叶边 and a
second object), with a Chinese seller title built from its attributes with synonyms,
fillers and missing words. A share of titles is deliberately bad (spam, English-only,
traditional script, full-width characters, HTML, over-long) to exercise the text pipeline.

Output folder::

    items.jsonl        item_id, title, image (relative path), split, attributes, title_noise
    images/*.jpg       one drawing per item
    annotations.json   COCO detection boxes (category_id = taobao33 id), each with the
                       box's colour, pattern, product and style under "attributes"
    queries.jsonl      held-out queries over the test split: query, relevant item ids,
                       and the attribute constraints they were built from
    search_log.jsonl   what shoppers searched and chose among the training items (query,
                       item_id): the same kinds of queries over the train split, none of
                       whose texts is a held-out query's, for finetuning (a query log)

Everything is drawn from ``numpy`` generators seeded by ``(seed, item index)``: the same
seed gives byte-identical files, whatever the number of worker processes.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from taomm.datasets import demo_vocab as vocab
from taomm.datasets.demo_drawing import background, draw_object
from taomm.errors import OptionError, TaommError
from taomm.taxonomy import load_taxonomy
from taomm.text import MAX_TITLE_CHARS

SPLITS = (("train", 0.8), ("val", 0.1), ("test", 0.1))
# Share of each kind of bad title; the rest are clean. (Kind -> probability.)
TITLE_NOISE = {"spam": 0.04, "english": 0.025, "traditional": 0.025, "fullwidth": 0.025,
               "html": 0.025, "long": 0.03}
JPEG_QUALITY = 90


@dataclass(frozen=True)
class CatalogSummary:
    out: Path
    items: int
    images: int
    annotations: int
    queries: int
    search_log: int
    splits: dict[str, int]
    title_noise: dict[str, int]


def _item_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    # One independent stream per (seed, item, purpose): attributes, title, drawing.
    return np.random.default_rng([seed, index, stream])


def _weighted(rng: np.random.Generator, options: dict[str, float]) -> str:
    keys = list(options)
    p = np.asarray([options[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def sample_attributes(rng: np.random.Generator) -> dict[str, Any]:
    """The ground truth of one item: product, colour, pattern, style, second object."""
    product = vocab.PRODUCTS[int(rng.choice(len(vocab.PRODUCTS), p=_PRODUCT_P))]
    attrs = _object_attributes(rng, product)
    attrs["second_object"] = None
    if rng.random() < 0.2:
        other = product
        while other.category_id == product.category_id:
            other = _pick(rng, vocab.PRODUCTS)
        second = _object_attributes(rng, other)
        second.pop("style")
        attrs["second_object"] = second
    return attrs


def _object_attributes(rng: np.random.Generator, product: vocab.Product) -> dict[str, Any]:
    taxonomy = load_taxonomy("taobao33")
    if product.fabric:
        pattern = _weighted(rng, {"纯色": 0.3, "波点": 0.2, "条纹": 0.18, "格子": 0.16, "碎花": 0.16})
    else:
        pattern = _weighted(rng, vocab.HARD_GOODS_PATTERNS)
    style = None
    if product.styles:
        style = _weighted(rng, {"荷叶边": 0.4, "百褶": 0.25, "A字": 0.2, "": 0.15}) or None
    return {
        "category_id": product.category_id,
        "category_name": taxonomy.classes[product.category_id],
        "product": product.name,
        "product_key": product.key,
        "colour": _pick(rng, vocab.COLOURS).name,
        "pattern": pattern,
        "style": style,
    }


_PRODUCT_P = np.asarray([p.weight for p in vocab.PRODUCTS], dtype=float)
_PRODUCT_P /= _PRODUCT_P.sum()
_COLOUR = {c.name: c for c in vocab.COLOURS}
_PATTERN = {p.name: p for p in vocab.PATTERNS}


def _phrase(attrs: dict[str, Any], rng: np.random.Generator) -> list[str]:
    """Attribute words of a title, in a seller's order, some left out."""
    product = vocab.PRODUCT_BY_KEY[attrs["product_key"]]
    words: list[str] = []
    if rng.random() < 0.8:
        words.append(_pick(rng, _COLOUR[attrs["colour"]].synonyms))
    if rng.random() < (0.88 if attrs["pattern"] != "纯色" else 0.3):
        words.append(_pick(rng, _PATTERN[attrs["pattern"]].synonyms))
    if attrs["style"] and rng.random() < 0.85:
        words.append(_pick(rng, vocab.STYLES[attrs["style"]][:2]))
    if len(words) > 1 and rng.random() < 0.3:
        rng.shuffle(words)
    name = _pick(rng, product.synonyms)
    if rng.random() < 0.15 and words:
        return [name, *words]  # 连衣裙红色波点: attributes after the noun happen too
    return [*words, name]


def _fill(rng: np.random.Generator, attrs: dict[str, Any], budget: int) -> tuple[list[str], list[str]]:
    product = vocab.PRODUCT_BY_KEY[attrs["product_key"]]
    pool = list(vocab.GENERAL_FILLERS)
    if product.clothing:
        pool += list(vocab.CLOTHING_FILLERS) * 2
    rng.shuffle(pool)
    pre = pool[:budget // 2]
    post = pool[budget // 2:budget]
    if product.clothing and rng.random() < 0.6:
        post.insert(0, _pick(rng, vocab.AUDIENCE))
    return pre, post


def make_title(attrs: dict[str, Any], noise: str | None, rng: np.random.Generator) -> str:
    """A seller title for ``attrs``; ``noise`` makes it one of the bad kinds."""
    if noise == "english":
        product = vocab.PRODUCT_BY_KEY[attrs["product_key"]]
        words = ["2020 new", _COLOUR[attrs["colour"]].english, _PATTERN[attrs["pattern"]].english]
        if attrs["style"]:
            words.append(vocab.STYLES[attrs["style"]][2])
        words += [product.english, _pick(rng, ("free shipping", "hot sale", "women", "fashion"))]
        return " ".join(words)
    phrase = _phrase(attrs, rng)
    pre, post = _fill(rng, attrs, int(rng.integers(1, 5)) if noise != "long" else 14)
    second = attrs.get("second_object")
    if second and rng.random() < 0.5:
        post.append("送" + second["product"])
    parts = [*pre, *phrase, *post]
    if noise != "long":
        while len("".join(parts)) > MAX_TITLE_CHARS and (pre or post):
            (post if post else pre).pop()
            parts = [*pre, *phrase, *post]
    title = "".join(parts)
    if noise == "long" and len(title) <= MAX_TITLE_CHARS:
        title += "".join(vocab.GENERAL_FILLERS[:6])
    if noise == "spam":
        category = _weighted(rng, {"contact": 0.6, "fraud": 0.25, "gambling": 0.15})
        ad = _pick(rng, vocab.SPAM_PHRASES[category]).format(
            digits="".join(str(d) for d in rng.integers(0, 10, 8)),
            phone="1" + _pick(rng, ("38", "39", "58", "86")) + "".join(str(d) for d in rng.integers(0, 10, 8)))
        title = title + ad if rng.random() < 0.7 else ad + title
    elif noise == "traditional":
        title = title.translate(vocab.TRADITIONAL)
    elif noise == "fullwidth":
        title = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in title) + "\u3000" + "２０２０"
    elif noise == "html":
        title = _pick(rng, ("&lt;b&gt;{}&lt;/b&gt;", "<span class=\"hot\">{}</span>", "{}&amp;包邮",
                            "{}&nbsp;&nbsp;现货")).format(title)
    return title


def _sample_noise(rng: np.random.Generator) -> str | None:
    r = rng.random()
    for kind, p in TITLE_NOISE.items():
        if r < p:
            return kind
        r -= p
    return None


def _layout(size: int, has_second: bool, aspects: list[float], rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1) for the main object and the optional second one."""
    def fit(max_w: float, max_h: float, aspect: float) -> tuple[int, int]:
        w = min(max_w, max_h * aspect)
        return max(12, int(w)), max(12, int(w / aspect))

    if not has_second:
        w, h = fit(size * rng.uniform(0.62, 0.9), size * rng.uniform(0.62, 0.9), aspects[0])
        x0 = int(rng.integers(0, size - w + 1))
        y0 = int(rng.integers(0, size - h + 1))
        return [(x0, y0, x0 + w, y0 + h)]
    # Main object on one side, the second (smaller) one beside it, not overlapping.
    split = rng.uniform(0.58, 0.68)
    w1, h1 = fit(size * split - 4, size * 0.88, aspects[0])
    w2, h2 = fit(size * (1 - split) - 6, size * 0.5, aspects[1])
    y1 = int(rng.integers(0, size - h1 + 1))
    y2 = int(rng.integers(0, size - h2 + 1))
    if rng.random() < 0.5:
        main = (2, y1, 2 + w1, y1 + h1)
        second = (size - 2 - w2, y2, size - 2, y2 + h2)
    else:
        main = (size - 2 - w1, y1, size - 2, y1 + h1)
        second = (2, y2, 2 + w2, y2 + h2)
    return [main, second]


def render_item(seed: int, index: int, attrs: dict[str, Any], size: int) -> tuple[bytes, list[dict[str, Any]]]:
    """JPEG bytes of item ``index`` and its annotations (pixel boxes ``x1, y1, x2, y2``)."""
    rng = _item_rng(seed, index, 2)
    canvas = background(size, rng)
    objects = [attrs] + ([attrs["second_object"]] if attrs["second_object"] else [])
    aspects = [vocab.PRODUCT_BY_KEY[o["product_key"]].aspect for o in objects]
    boxes = _layout(size, len(objects) > 1, aspects, rng)
    out = []
    for obj, box in zip(objects, boxes, strict=True):
        rgb = np.clip(np.asarray(_COLOUR[obj["colour"]].rgb) + rng.integers(-12, 13, 3), 0, 255)
        tight = draw_object(canvas, obj["product_key"], obj.get("style"), tuple(int(c) for c in rgb),
                            obj["pattern"], box, rng)
        if tight is not None:
            out.append({"box": tight, "category_id": obj["category_id"], "attributes": box_attributes(obj)})
    buf = io.BytesIO()
    canvas.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue(), out


def box_attributes(obj: dict[str, Any]) -> dict[str, str]:
    """What a box's annotation carries for the detector's attribute head: colour, pattern,
    the product within its coarse class (连衣裙 vs 半身裙, both "skirt & dress") and its
    visible style (荷叶边 ...) when it has one: what titles and queries name and the 33
    classes alone do not separate."""
    out = {"colour": obj["colour"], "pattern": obj["pattern"], "product": obj["product"]}
    if obj.get("style"):
        out["style"] = obj["style"]
    return out


def _render_job(job: tuple[int, int, dict[str, Any], int]) -> tuple[bytes, list[dict[str, Any]]]:
    return render_item(*job)


def query_constraints(attrs: dict[str, Any]) -> list[dict[str, str]]:
    """The queries a shopper might type that this item answers."""
    product = vocab.PRODUCT_BY_KEY[attrs["product_key"]]
    noun = {"generic": product.generic} if product.generic else {"product": product.name}
    out = [{"colour": attrs["colour"], "product": product.name}]
    if attrs["pattern"] != "纯色":
        out.append({"pattern": attrs["pattern"], **noun})
        out.append({"colour": attrs["colour"], "pattern": attrs["pattern"], "product": product.name})
        if attrs["style"]:
            out.append({"pattern": attrs["pattern"], "style": attrs["style"], **noun})
    elif attrs["style"]:
        out.append({"style": attrs["style"], **noun})
    return out


def query_text(c: dict[str, str]) -> str:
    """What a shopper types for ``c``: its words in a fixed order (波点 荷叶边 裙)."""
    return "".join(c[k] for k in ("colour", "pattern", "style", "generic", "product") if k in c)


def matches(attrs: dict[str, Any], constraints: dict[str, str]) -> bool:
    """Does an item (its main object) satisfy every constraint of a query?"""
    product = vocab.PRODUCT_BY_KEY[attrs["product_key"]]
    for key, value in constraints.items():
        if key == "generic":
            if product.generic != value:
                return False
        elif attrs.get(key) != value:
            return False
    return True


def build_queries(items: list[dict[str, Any]], max_queries: int) -> list[dict[str, Any]]:
    """Held-out queries over the test split, each with every relevant test item.

    When there are more than ``max_queries`` distinct queries, the ones with the most
    relevant items are kept (ties by text), so the list is stable and meaningful.
    """
    test = [it for it in items if it["split"] == "test"]
    seen: dict[str, dict[str, str]] = {}
    for it in test:
        for c in query_constraints(it["attributes"]):
            seen.setdefault(query_text(c), c)
    queries = []
    for text, constraints in seen.items():
        relevant = [it["item_id"] for it in test if matches(it["attributes"], constraints)]
        queries.append({"query": text, "relevant": relevant, "constraints": constraints})
    queries.sort(key=lambda q: (-len(q["relevant"]), q["query"]))
    return sorted(queries[:max_queries], key=lambda q: q["query"])


def logged_constraints(attrs: dict[str, Any]) -> list[dict[str, str]]:
    """What shoppers searched before choosing this item: the kinds of the held-out queries
    and the same attributes with the product's own name or a colour (荷叶边连衣裙, 红色裙,
    波点荷叶边半身裙), one per distinct text."""
    product = vocab.PRODUCT_BY_KEY[attrs["product_key"]]
    out = query_constraints(attrs)
    colour, pattern, style = attrs["colour"], attrs["pattern"], attrs["style"]
    plain = pattern == "纯色"
    if product.generic:
        out.append({"colour": colour, "generic": product.generic})
        if not plain:
            out.append({"pattern": pattern, "product": product.name})
    if style:
        out.append({"style": style, "product": product.name})
        out.append({"colour": colour, "style": style, "product": product.name})
        if not plain:
            out.append({"pattern": pattern, "style": style, "product": product.name})
    return list({query_text(c): c for c in out}.values())


def build_search_log(items: list[dict[str, Any]], held_out: set[str]) -> list[dict[str, str]]:
    """(query, item_id) for every query a training item was chosen for (``logged_constraints``),
    in item order, except the queries whose text is held out: finetuning may learn from it
    without ever seeing an evaluation query (it must compose 红色 and T恤 from other searches)."""
    log = []
    for it in items:
        if it["split"] != "train":
            continue
        for constraints in logged_constraints(it["attributes"]):
            text = query_text(constraints)
            if text not in held_out:
                log.append({"query": text, "item_id": it["item_id"]})
    return log


def generate_catalog(out: str | os.PathLike[str], items: int = 2000, seed: int = 0, image_size: int = 192,
                     workers: int = 1, max_queries: int = 300, overwrite: bool = False,
                     on_progress: Callable[[int], None] | None = None) -> CatalogSummary:
    """Write a demo catalog of ``items`` products to ``out`` (see the module docstring)."""
    if items < 1:
        raise OptionError("{items} must be at least 1", "items")
    if not 64 <= image_size <= 1024:
        raise OptionError("{image_size} must be between 64 and 1024", "image_size")
    out = Path(out)
    if (out / "items.jsonl").exists():
        if not overwrite:
            raise TaommError(f"{out} already holds a catalog (items.jsonl); choose another folder or overwrite it")
        # Same seed -> same files: leave no image of a previous, larger catalog behind.
        shutil.rmtree(out / "images", ignore_errors=True)
    (out / "images").mkdir(parents=True, exist_ok=True)

    split_of = _assign_splits(items, seed)
    records = [_item_record(seed, i, str(split_of[i])) for i in range(items)]
    coco_images, coco_annotations = _render_images(out, records, seed, image_size, workers, on_progress)
    _write_jsonl(out / "items.jsonl", records)
    coco = _coco_json(seed, items, image_size, coco_images, coco_annotations)
    (out / "annotations.json").write_text(json.dumps(coco, ensure_ascii=False), "utf-8")
    queries = build_queries(records, max_queries)
    _write_jsonl(out / "queries.jsonl", queries)
    search_log = build_search_log(records, {q["query"] for q in queries})
    _write_jsonl(out / "search_log.jsonl", search_log)

    noise_counts: dict[str, int] = {}
    for rec in records:
        if rec["title_noise"]:
            noise_counts[rec["title_noise"]] = noise_counts.get(rec["title_noise"], 0) + 1
    return CatalogSummary(out.resolve(), items, len(coco_images), len(coco_annotations), len(queries),
                          len(search_log), {name: int((split_of == name).sum()) for name, _ in SPLITS}, noise_counts)


def _assign_splits(items: int, seed: int) -> np.ndarray:
    """The split name of every item: a seeded permutation cut by the SPLITS shares."""
    split_rng = np.random.default_rng([seed, 1 << 31])
    order = split_rng.permutation(items)
    split_of = np.empty(items, dtype=object)
    start = 0
    for name, share in SPLITS:
        count = items - start if name == SPLITS[-1][0] else int(round(share * items))
        split_of[order[start:start + count]] = name
        start += count
    return split_of


def _item_record(seed: int, i: int, split: str) -> dict[str, Any]:
    """The items.jsonl line of item ``i``: its attributes, title (maybe noisy) and image."""
    attrs = sample_attributes(_item_rng(seed, i, 0))
    title_rng = _item_rng(seed, i, 1)
    noise = _sample_noise(title_rng)
    item_id = f"demo{i:06d}"
    return {"item_id": item_id, "title": make_title(attrs, noise, title_rng),
            "image": f"images/{item_id}.jpg", "split": split,
            "attributes": attrs, "title_noise": noise}


def _render_images(out: Path, records: list[dict[str, Any]], seed: int, image_size: int, workers: int,
                   on_progress: Callable[[int], None] | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Draw and write every item's image; its COCO ``images`` and ``annotations`` entries."""
    jobs = [(seed, i, rec["attributes"], image_size) for i, rec in enumerate(records)]
    coco_images, coco_annotations = [], []
    # forkserver, not fork: a fork copies whatever locks the caller's threads (onnxruntime's,
    # torch's) hold at that moment, and a worker then waited forever inside PIL's drawing
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) if workers > 1 else None
    try:
        results = pool.map(_render_job, jobs, chunksize=32) if pool else map(_render_job, jobs)
        for i, (jpeg, objects) in enumerate(results):
            rec = records[i]
            (out / rec["image"]).write_bytes(jpeg)
            coco_images.append({"id": i + 1, "file_name": Path(rec["image"]).name, "width": image_size,
                                "height": image_size, "item_id": rec["item_id"]})
            for obj in objects:
                x1, y1, x2, y2 = obj["box"]
                coco_annotations.append({"id": len(coco_annotations) + 1, "image_id": i + 1,
                                         "category_id": obj["category_id"], "bbox": [x1, y1, x2 - x1, y2 - y1],
                                         "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                                         "attributes": obj["attributes"]})
            if on_progress:
                on_progress(1)
    finally:
        if pool:
            pool.shutdown()
    return coco_images, coco_annotations


def _coco_json(seed: int, items: int, image_size: int, coco_images: list[dict[str, Any]],
               coco_annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """annotations.json: COCO detection boxes plus the vocabulary of their attributes."""
    taxonomy = load_taxonomy("taobao33")
    return {
        "info": {"description": "taomm demo catalog", "seed": seed, "items": items, "image_size": image_size},
        "images": coco_images,
        "annotations": coco_annotations,
        "categories": [{"id": i, "name": name, "supercategory": "product"} for i, name in enumerate(taxonomy.classes)],
        "attribute_vocab": {"colour": [c.name for c in vocab.COLOURS], "pattern": [p.name for p in vocab.PATTERNS],
                            "product": [p.name for p in vocab.PRODUCTS], "style": list(vocab.STYLES)},
    }


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
