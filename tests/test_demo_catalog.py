"""The demo catalog: deterministic, valid COCO, consistent items and queries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from taomm.datasets import demo_vocab as vocab
from taomm.datasets.demo_catalog import (
    TITLE_NOISE,
    generate_catalog,
    logged_constraints,
    make_title,
    matches,
    query_text,
    sample_attributes,
)
from taomm.errors import TaommError

N = 120


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("catalog")
    generate_catalog(out, items=N, seed=7)
    return out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_whatever_the_workers(catalog: Path, tmp_path: Path) -> None:
    generate_catalog(tmp_path / "again", items=N, seed=7, workers=2)
    assert tree_bytes(tmp_path / "again") == tree_bytes(catalog)
    generate_catalog(tmp_path / "other", items=N, seed=8)
    assert tree_bytes(tmp_path / "other")["items.jsonl"] != tree_bytes(catalog)["items.jsonl"]


def test_overwrite_replaces_a_larger_catalog(catalog: Path, tmp_path: Path) -> None:
    out = tmp_path / "c"
    generate_catalog(out, items=N + 30, seed=7)
    with pytest.raises(TaommError, match="already holds a catalog"):
        generate_catalog(out, items=N, seed=7)
    generate_catalog(out, items=N, seed=7, overwrite=True)
    assert tree_bytes(out) == tree_bytes(catalog)


def test_items(catalog: Path) -> None:
    items = read_jsonl(catalog / "items.jsonl")
    assert len(items) == N
    assert len({it["item_id"] for it in items}) == N
    assert {it["split"] for it in items} == {"train", "val", "test"}
    for it in items:
        assert (catalog / it["image"]).is_file()
        a = it["attributes"]
        assert set(a) >= {"category_id", "category_name", "product", "colour", "pattern", "style", "second_object"}
        assert a["colour"] in {c.name for c in vocab.COLOURS}
        assert a["pattern"] in {p.name for p in vocab.PATTERNS}
        assert it["title_noise"] in (None, *TITLE_NOISE)


def test_coco_annotations_are_valid(catalog: Path) -> None:
    coco = COCO(str(catalog / "annotations.json"))
    assert sorted(coco.getCatIds()) == list(range(33))
    items = {it["item_id"]: it for it in read_jsonl(catalog / "items.jsonl")}
    assert len(coco.getImgIds()) == N
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        with Image.open(catalog / "images" / info["file_name"]) as img:
            assert img.size == (info["width"], info["height"])
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert anns, "every image has at least one box"
        item = items[info["item_id"]]
        assert anns[0]["category_id"] == item["attributes"]["category_id"]
        assert len(anns) == 1 + (item["attributes"]["second_object"] is not None)
        for ann in anns:
            x, y, w, h = ann["bbox"]
            assert x >= 0 and y >= 0 and w > 0 and h > 0
            assert x + w <= info["width"] and y + h <= info["height"]
            assert {"colour", "pattern", "product"} <= set(ann["attributes"]) <= {"colour", "pattern", "product", "style"}


def test_queries_point_at_matching_test_items(catalog: Path) -> None:
    items = {it["item_id"]: it for it in read_jsonl(catalog / "items.jsonl")}
    queries = read_jsonl(catalog / "queries.jsonl")
    assert queries
    test_ids = {i for i, it in items.items() if it["split"] == "test"}
    for q in queries:
        assert q["relevant"]
        assert set(q["relevant"]) <= test_ids
        want = {i for i in test_ids if matches(items[i]["attributes"], q["constraints"])}
        assert set(q["relevant"]) == want


def test_search_log_holds_training_items_and_no_held_out_query(catalog: Path) -> None:
    items = {it["item_id"]: it for it in read_jsonl(catalog / "items.jsonl")}
    held_out = {q["query"] for q in read_jsonl(catalog / "queries.jsonl")}
    log = read_jsonl(catalog / "search_log.jsonl")
    assert log and set(log[0]) == {"query", "item_id"}
    texts = {row["query"] for row in log}
    assert not texts & held_out
    generic = {"上衣", "裙", "裤", "包", "鞋", "帽", "箱", "外套"}
    for row in log:
        item = items[row["item_id"]]
        assert item["split"] == "train"
        assert any(matches(item["attributes"], c) and query_text(c) == row["query"]
                   for c in logged_constraints(item["attributes"]))
    assert any(row["query"].endswith(tuple(generic)) for row in log)  # nouns no title writes


def test_bad_titles_of_every_kind() -> None:
    rng = np.random.default_rng(0)
    attrs = sample_attributes(rng)
    clean = make_title(attrs, None, np.random.default_rng(1))
    assert len(clean) <= 36 and any("\u4e00" <= c <= "\u9fff" for c in clean)
    assert len(make_title(attrs, "long", np.random.default_rng(1))) > 36
    assert not any("\u4e00" <= c <= "\u9fff" for c in make_title(attrs, "english", np.random.default_rng(1)))
    assert any("\uff01" <= c <= "\uff5e" for c in make_title(attrs, "fullwidth", np.random.default_rng(1)))
    html = make_title(attrs, "html", np.random.default_rng(1))
    assert "&" in html or "<" in html
    spam = make_title(attrs, "spam", np.random.default_rng(1))
    assert any(word in spam for phrases in vocab.SPAM_PHRASES.values() for word in (p.split("{")[0] for p in phrases))


def test_traditional_titles_use_traditional_characters() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        attrs = sample_attributes(rng)
        simplified = make_title(attrs, None, np.random.default_rng(5))
        traditional = make_title(attrs, "traditional", np.random.default_rng(5))
        assert traditional == simplified.translate(vocab.TRADITIONAL)


def test_polka_dot_ruffle_skirts_are_queryable(tmp_path: Path) -> None:
    generate_catalog(tmp_path / "c", items=600, seed=0)
    queries = {q["query"]: q for q in read_jsonl(tmp_path / "c" / "queries.jsonl")}
    assert "波点荷叶边裙" in queries
    items = {it["item_id"]: it for it in read_jsonl(tmp_path / "c" / "items.jsonl")}
    for item_id in queries["波点荷叶边裙"]["relevant"]:
        a = items[item_id]["attributes"]
        assert (a["pattern"], a["style"], a["category_id"]) == ("波点", "荷叶边", 1)


@pytest.mark.parametrize("pattern", [p.name for p in vocab.PATTERNS])
def test_the_ground_colour_dominates_the_contrasting_one(pattern: str) -> None:
    """The colour label is readable from the pixels: a white item with black stripes and a
    black one with white stripes are different pictures (half-period bands made them one),
    and so are white flowers on black and black flowers on white."""
    from taomm.datasets.demo_drawing import _secondary, texture

    def share(fabric: np.ndarray, rgb: tuple[int, int, int]) -> float:
        return float((np.abs(fabric - np.array(rgb)).sum(-1) <= 12).mean())

    for colour in vocab.COLOURS:
        for seed, (w, h) in enumerate([(30, 40), (60, 90), (150, 120)] * 3):
            fabric = np.asarray(texture(pattern, colour.rgb, w, h, np.random.default_rng(seed)), dtype=np.int32)
            ground, other = share(fabric, colour.rgb), share(fabric, _secondary(colour.rgb))
            assert ground >= 1.5 * other, (pattern, colour.name, w, h, ground, other)
