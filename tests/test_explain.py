"""Explaining a result (its regions scored against the query) and category facets: the
engine, the HTTP API and the web page in headless Chromium."""

from __future__ import annotations

import json
import shutil
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import torch
from test_search import catalog, chromium_paths, engine, get, server  # noqa: F401 (fixtures)

from taomm.datasets.store import FeatureStore, Item, main_region, word_ends_of
from taomm.errors import TaommError
from taomm.index import ITEMS, MANIFEST, open_index, sha256_file
from taomm.search import FACET_DEPTH, QueryError, SearchEngine

QUERY, OTHER = "红色波点半身裙", "蓝色格子衬衫"


def item_with(boxes: list[list[float]], labels: list[int]) -> Item:
    n = len(boxes)
    return Item("x", "裙", word_ends_of(["裙"]), 200, 100, np.asarray(boxes, np.float32).reshape(-1, 4),
                np.zeros((n, 4), np.float16), np.asarray(labels, np.int32), np.linspace(0.9, 0.5, n, dtype=np.float32))


def test_main_region_is_the_largest_box_with_a_class() -> None:
    # a huge unknown box, a small confident one, a larger later one: the larger known wins
    assert main_region(item_with([[0, 0, 200, 100], [0, 0, 10, 10], [0, 0, 50, 50]], [-1, 3, 7])) == 2
    assert main_region(item_with([[0, 0, 20, 20], [50, 50, 70, 70]], [1, 2])) == 0  # a tie: the first
    assert main_region(item_with([[0, 0, 20, 20]], [-1])) is None
    assert main_region(item_with([], [])) is None


def with_many_regions(search_engine: SearchEngine, least: int = 3) -> str:
    return next(it.item_id for it in search_engine.store if it.num_regions >= least)


# --- categories and facets -------------------------------------------------------------------

def test_export_records_each_items_category(catalog) -> None:  # noqa: F811
    index = open_index(catalog["index"])
    assert index.manifest["taxonomy"]["name"] == "taobao33" and len(index.manifest["taxonomy"]["classes"]) == 33
    classes = index.manifest["taxonomy"]["classes"]
    with FeatureStore(catalog["store"]) as store:
        for meta in index.items:
            item = store.get(meta["item_id"])
            main = main_region(item)
            if main is None:
                assert meta["category"] is None
            else:
                label = int(item.labels[main])
                assert meta["category"] == {"id": label, "name": classes[label]}
    assert sum(1 for m in index.items if m["category"]) >= 30  # most items have a labelled region


def test_facets_count_the_querys_candidates(engine: SearchEngine) -> None:  # noqa: F811
    hits, facets = engine.search_with_facets(QUERY, k=5)
    assert [h.item_id for h in hits] == [h.item_id for h in engine.search(QUERY, k=5)]  # results unchanged
    assert len(engine.index) < FACET_DEPTH  # so the candidates are every item: the index's histogram
    cats = engine.categories
    expected = {int(c): int((cats == c).sum()) for c in np.unique(cats) if c >= 0}
    assert {f["category"]: f["count"] for f in facets} == expected
    assert sum(f["count"] for f in facets) == int((cats >= 0).sum())
    assert [f["count"] for f in facets] == sorted((f["count"] for f in facets), reverse=True)
    names = engine.index.manifest["taxonomy"]["classes"]
    assert all(f["name"] == names[f["category"]] for f in facets)
    # a shallower candidate set: the counts are those of the query's nearest items
    vector = engine.encode_ids([engine.query_ids(QUERY)])
    rows = engine.index.search("item", vector, 10)[1][0]
    shallow = engine.facets(vector, depth=10)
    assert sum(f["count"] for f in shallow) == int((cats[rows] >= 0).sum())


def test_category_filter_keeps_only_that_category(engine: SearchEngine) -> None:  # noqa: F811
    _, facets = engine.search_with_facets(QUERY, k=5)
    chosen = facets[0]
    row_of = engine.index.rows
    for value in (chosen["category"], str(chosen["category"]), chosen["name"], chosen["name"].upper()):
        hits, again = engine.search_with_facets(QUERY, k=5, category=value)
        assert again == facets  # facets do not depend on the filter
        assert len(hits) == min(5, chosen["count"]) and [h.rank for h in hits] == list(range(1, len(hits) + 1))
        assert all(engine.categories[row_of[h.item_id]] == chosen["category"] for h in hits)
    # the filtered ranking is the full ranking with the other categories left out
    everything = engine.search(QUERY, k=len(engine.index), rerank=0)
    mine = [h.item_id for h in everything if engine.categories[row_of[h.item_id]] == chosen["category"]]
    hits = engine.search(QUERY, k=chosen["count"], rerank=0, category=chosen["category"])
    assert [h.item_id for h in hits] == mine
    # reranked photo search within a category: still only that category
    photo = engine.search(QUERY, k=3, target="image", category=chosen["category"])
    assert all(engine.categories[row_of[h.item_id]] == chosen["category"] for h in photo)
    for bad in ("no such category", "99", "-1", ""):
        with pytest.raises(QueryError, match="category"):
            engine.search_with_facets(QUERY, category=bad)


def strip_categories(catalog, tmp_path: Path) -> Path:  # noqa: F811
    """A copy of the index as exported before categories: items.jsonl without them."""
    out = tmp_path / "index"
    shutil.copytree(catalog["index"], out, symlinks=True)
    version = (out / "current").resolve()
    rows = [json.loads(line) for line in (version / ITEMS).read_text("utf-8").splitlines()]
    (version / ITEMS).write_text("".join(json.dumps({k: v for k, v in r.items() if k != "category"},
                                                    ensure_ascii=False) + "\n" for r in rows), "utf-8")
    manifest = json.loads((version / MANIFEST).read_text("utf-8"))
    manifest.pop("taxonomy")
    manifest["files"][ITEMS] = sha256_file(version / ITEMS)
    (version / MANIFEST).write_text(json.dumps(manifest), "utf-8")
    return out


def test_an_index_without_categories_has_no_facets(catalog, engine: SearchEngine, tmp_path: Path) -> None:  # noqa: F811
    old = SearchEngine(strip_categories(catalog, tmp_path), device="cpu", bf16=False)
    assert old.categories is None
    hits, facets = old.search_with_facets(QUERY, k=5)
    assert facets is None and [h.item_id for h in hits] == [h.item_id for h in engine.search(QUERY, k=5)]
    with pytest.raises(QueryError, match="no categories"):
        old.search_with_facets(QUERY, category="1")
    assert old.explain(QUERY, hits[0].item_id)["category"] is None  # explain still works


# --- explain --------------------------------------------------------------------------------

def test_explain_gives_the_stores_regions_scored_by_the_model(engine: SearchEngine) -> None:  # noqa: F811
    item_id = with_many_regions(engine)
    data = engine.explain(QUERY, item_id)
    store = engine.store
    item = store.get(item_id)
    n = min(item.num_regions, engine.model.config.max_regions)
    assert set(data) == {"query", "item_id", "title", "width", "height", "itm_score", "best_region", "category",
                         "regions_total", "regions"}
    assert (data["item_id"], data["width"], data["height"]) == (item_id, item.width, item.height)
    assert data["regions_total"] == item.num_regions and len(data["regions"]) == n
    regions = data["regions"]
    assert [r["index"] for r in regions] == list(range(n))
    boxes = np.asarray([r["box"] for r in regions])
    assert ((boxes >= 0) & (boxes <= 1)).all()
    np.testing.assert_allclose(boxes * ([item.width, item.height] * 2), item.boxes[:n], atol=1e-3)
    np.testing.assert_allclose([r["box_pixels"] for r in regions], item.boxes[:n], atol=0.01)
    classes = store.meta.classes
    assert [r["class_id"] for r in regions] == item.labels[:n].tolist()
    assert [r["class_name"] for r in regions] == [classes[c] if c >= 0 else None for c in item.labels[:n]]
    np.testing.assert_allclose([r["confidence"] for r in regions], item.scores[:n], atol=1e-5)
    scores = np.asarray([r["score"] for r in regions])
    assert (np.abs(scores) <= 1 + 1e-5).all()  # cosines
    assert data["best_region"] == int(np.argmax(scores))
    assert data["category"] == engine.index.items[engine.index.rows[item_id]]["category"]
    # the overall score is the ITM logit that reranking ranks by
    ids = torch.tensor([engine.query_ids(QUERY)])
    itm = engine._itm(ids, np.asarray([engine.index.rows[item_id]]))[0]
    assert data["itm_score"] == pytest.approx(float(itm), abs=1e-4)
    # the scores come from the model and the query: another query scores the regions otherwise
    other = engine.explain(OTHER, item_id)
    assert [r["box"] for r in other["regions"]] == [r["box"] for r in regions]
    assert not np.allclose([r["score"] for r in other["regions"]], scores, atol=1e-4)
    assert other["itm_score"] != data["itm_score"]
    assert other["best_region"] == int(np.argmax([r["score"] for r in other["regions"]]))
    assert engine.explain(QUERY, item_id) == data  # deterministic


def test_explain_refuses_unknown_items_and_bad_queries(engine: SearchEngine) -> None:  # noqa: F811
    with pytest.raises(TaommError, match="unknown item id"):
        engine.explain(QUERY, "nope")
    item_id = engine.index.item_ids[0]
    for query, message in (("加微信领红包", "spam"), ("hello", "no Chinese"), ("<p> </p>", "empty")):
        with pytest.raises(QueryError, match=message):
            engine.explain(query, item_id)


# --- the API --------------------------------------------------------------------------------

def api(server: str, path: str, **params: str) -> tuple[int, dict]:  # noqa: F811
    status, body, ctype = get(server + path + "?" + urllib.parse.urlencode(params))
    assert "application/json" in ctype, (path, params, status)
    return status, json.loads(body)


def test_explain_endpoint(server: str, engine: SearchEngine) -> None:  # noqa: F811
    item_id = with_many_regions(engine)
    status, data = api(server, "/api/explain", q=QUERY, item_id=item_id)
    assert status == 200
    assert data["image_url"] == f"/images/{item_id}" and get(server + data["image_url"])[0] == 200
    assert {k: v for k, v in data.items() if k != "image_url"} == engine.explain(QUERY, item_id)
    assert api(server, "/api/explain", q=QUERY, item_id="nope")[0] == 404
    for params in ({"item_id": item_id}, {"q": QUERY}, {"q": " ", "item_id": item_id},
                   {"q": "裙" * 65, "item_id": item_id}, {"q": "加微信领红包", "item_id": item_id},
                   {"q": "hello", "item_id": item_id}, {"q": QUERY, "item_id": "x" * 300}):
        status, body = api(server, "/api/explain", **params)
        assert status == 422 and body["error"], params


def test_search_endpoint_facets_and_category(server: str, engine: SearchEngine) -> None:  # noqa: F811
    status, data = api(server, "/api/search", q=QUERY, k="4")
    assert status == 200 and set(data) == {"query", "results", "facets"}
    assert set(data["results"][0]) == {"rank", "item_id", "title", "score", "image_url"}
    assert data["facets"] == engine.search_with_facets(QUERY, k=4)[1]
    chosen = data["facets"][0]
    for value in (str(chosen["category"]), chosen["name"]):
        status, only = api(server, "/api/search", q=QUERY, k="4", category=value)
        assert status == 200 and len(only["results"]) == min(4, chosen["count"])
        assert {engine.categories[engine.index.rows[r["item_id"]]] for r in only["results"]} == {chosen["category"]}
        assert only["facets"] == data["facets"]
    status, body = api(server, "/api/search", q=QUERY, category="no such category")
    assert status == 422 and "category" in body["error"]
    assert api(server, "/api/search", q=QUERY, category="c" * 200)[0] == 422


def test_explain_and_category_never_answer_5xx(server: str) -> None:  # noqa: F811
    rng = np.random.default_rng(1)
    alphabet = [*"裙红色波点abc!@#%&*()[]{}<>/\\'\"\t\n\x00 0123", "\u202e", "😀", "%", ".."]
    for i in range(60):
        junk = "".join(rng.choice(alphabet, int(rng.integers(0, 40))))
        path = ("/api/explain?q=" + urllib.parse.quote(QUERY) + "&item_id=" if i % 3 == 0 else
                "/api/explain?item_id=p00001&q=" if i % 3 == 1 else
                "/api/search?q=" + urllib.parse.quote(QUERY) + "&category=")
        url = server + path + urllib.parse.quote(junk, safe="")
        assert get(url)[0] < 500, url


# --- the page -------------------------------------------------------------------------------

@pytest.mark.skipif(chromium_paths() is None, reason="needs the Debian packages chromium and chromium-driver "
                    "(.ci/run installs them)")
def test_web_page_explains_a_result_and_filters_by_category(server: str, engine: SearchEngine) -> None:  # noqa: F811
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1200,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(server + "/")
        box = driver.find_element(By.ID, "query")
        box.send_keys(QUERY)
        box.send_keys(Keys.ENTER)
        WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .card")) >= 5)
        # click a result with several regions: its explain view draws them
        cards = driver.find_elements(By.CSS_SELECTOR, "#results .card")
        store = engine.store
        card = next(c for c in cards if store.get(c.get_attribute("data-item-id")).num_regions >= 2)
        item_id = card.get_attribute("data-item-id")
        expected = engine.explain(QUERY, item_id)
        card.click()

        def drawn(d):
            img = d.find_elements(By.CSS_SELECTOR, "#explain-photo img.explain-img")
            ready = img and d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img[0])
            regions = d.find_elements(By.CSS_SELECTOR, "#explain-photo .region")
            return regions if ready and len(regions) == len(expected["regions"]) else False
        regions = WebDriverWait(driver, 30).until(drawn)
        assert driver.find_element(By.ID, "explain").is_displayed()
        best = driver.find_elements(By.CSS_SELECTOR, "#explain-photo .region.best")
        assert len(best) == 1 and int(best[0].get_attribute("data-index")) == expected["best_region"]
        for element, region in zip(regions, expected["regions"], strict=True):
            label = element.find_element(By.CSS_SELECTOR, ".label").text
            assert (region["class_name"] or "unknown") in label and f"{region['score']:.3f}" in label
        # each box sits over the displayed image where its fractions say (image and boxes measured
        # in one script call: the page may be scrolling smoothly in between)
        image_rect, *rects = driver.execute_script(
            "return [document.querySelector('#explain-photo img'), ...arguments]"
            ".map((e) => e.getBoundingClientRect().toJSON())", *regions)
        for rect, region in zip(rects, expected["regions"], strict=True):
            x1, y1, x2, y2 = region["box"]
            assert rect["left"] == pytest.approx(image_rect["left"] + x1 * image_rect["width"], abs=1.5)
            assert rect["top"] == pytest.approx(image_rect["top"] + y1 * image_rect["height"], abs=1.5)
            assert rect["width"] == pytest.approx((x2 - x1) * image_rect["width"], abs=1.5)
            assert rect["height"] == pytest.approx((y2 - y1) * image_rect["height"], abs=1.5)
        # the similar items still come
        WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#similar .card")) == 5)
        # facet chips: one filters the results to its category, "all" clears it
        chips = driver.find_elements(By.CSS_SELECTOR, "#facets .chip")
        facets = engine.search_with_facets(QUERY)[1]
        assert [c.text for c in chips] == [f"{f['name']} ({f['count']})" for f in facets]
        chosen = facets[-1]  # the rarest: the filter visibly changes the results
        chips[-1].click()
        WebDriverWait(driver, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#facets .chip.active")
            and len(d.find_elements(By.CSS_SELECTOR, "#results .card")) == min(20, chosen["count"]))
        shown = [c.get_attribute("data-item-id") for c in driver.find_elements(By.CSS_SELECTOR, "#results .card")]
        assert {engine.categories[engine.index.rows[i]] for i in shown} == {chosen["category"]}
        driver.find_element(By.CSS_SELECTOR, "#facets .chip.clear").click()
        WebDriverWait(driver, 30).until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#facets .chip.active")
                                        and len(d.find_elements(By.CSS_SELECTOR, "#results .card")) == 20)
    finally:
        driver.quit()
