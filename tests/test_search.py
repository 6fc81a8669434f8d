"""Index export, search, recommend, integrity checks and the HTTP server (real uvicorn on
loopback; the web page in headless Chromium)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import build_pretraining_store
from PIL import Image
from test_cli import assert_one_line_error
from typer.testing import CliRunner

from taomm.cli.app import app
from taomm.datasets.store import FeatureStore
from taomm.errors import TaommError
from taomm.index import IndexParams, build_faiss, configure_search, export_index, open_index
from taomm.model import InterBertConfig, InterBertForRetrieval
from taomm.search import DEFAULT_RERANK, QueryError, SearchEngine
from taomm.text.tokenizer import TitleTokenizer


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A store with images on disk, its manifest, and a (random) tiny retrieval model."""
    root = tmp_path_factory.mktemp("search")
    store = build_pretraining_store(root / "store", count=40)
    (root / "images").mkdir()
    lines = []
    with FeatureStore(store) as fs:
        for i, item in enumerate(fs):
            colour = tuple(int(c) for c in np.random.default_rng(i).integers(0, 255, 3))
            Image.new("RGB", (32, 32), colour).save(root / "images" / f"{item.item_id}.png")
            lines.append(json.dumps({"item_id": item.item_id, "title": item.title,
                                     "image": f"images/{item.item_id}.png"}, ensure_ascii=False))
    (root / "items.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    tok = TitleTokenizer(store / "vocab.txt")
    torch.manual_seed(0)
    model = InterBertForRetrieval(InterBertConfig.from_preset("tiny", vocab_size=len(tok), region_feature_dim=32))
    model.save_pretrained(root / "model", vocab_file=store / "vocab.txt")
    export_index(root / "model", store, root / "index", manifest=root / "items.jsonl", bf16=False)
    return {"root": root, "store": store, "model": root / "model", "index": root / "index",
            "manifest": root / "items.jsonl"}


@pytest.fixture(scope="module")
def engine(catalog) -> SearchEngine:
    return SearchEngine(catalog["index"], device="cpu", bf16=False)


def copy_index(catalog, tmp_path: Path) -> Path:
    """A private copy of the index (symlinks kept) to tamper with."""
    out = tmp_path / "index"
    shutil.copytree(catalog["index"], out, symlinks=True)
    return out


# --- export ----------------------------------------------------------------------------

def test_export_layout_and_versions(catalog, tmp_path: Path) -> None:
    index = open_index(catalog["index"])
    manifest = index.manifest
    assert manifest["count"] == 40 == len(index) and manifest["dims"] == {"image": 16, "item": 16}
    assert manifest["index"]["image"]["type"] == "flat" and manifest["images_known"] == 40
    assert index.vectors["image"].dtype == np.float16
    norms = np.linalg.norm(index.vectors["image"].astype(np.float32), axis=1)
    np.testing.assert_allclose(norms, 1, atol=2e-3)
    assert set(manifest["files"]) == {"ids.json", "items.jsonl", "image_vectors.npy", "item_vectors.npy",
                                      "image.faiss", "item.faiss"}
    assert (catalog["index"] / "current").is_symlink()
    # a second export becomes current atomically; the first stays until pruned
    out = copy_index(catalog, tmp_path)
    second = export_index(catalog["model"], catalog["store"], out, IndexParams(kind="hnsw"), bf16=False)
    assert second.name == "v0002" and (out / "current").resolve() == second.resolve()
    assert (out / "versions" / "v0001").is_dir()
    reopened = open_index(out)
    assert reopened.manifest["index"]["image"]["type"] == "hnsw" and reopened.manifest["image_root"] is None
    third = export_index(catalog["model"], catalog["store"], out, bf16=False)
    assert third.name == "v0003" and not (out / "versions" / "v0001").exists()  # two versions kept


def test_approximate_indexes_recall() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, 32))
    x = centres[rng.integers(0, 50, 4000)] + 0.3 * rng.standard_normal((4000, 32))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:100] + 0.05 * rng.standard_normal((100, 32))
    exact = build_faiss(x, IndexParams(kind="flat").resolved(4000, 32)).search(q.astype(np.float32), 10)[1]
    for kind in ("hnsw", "ivfpq"):
        params = IndexParams(kind=kind).resolved(4000, 32)
        index = configure_search(build_faiss(x, params), params)
        found = index.search(q.astype(np.float32), 10)[1]
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)])
        assert recall >= 0.9, (kind, recall)


# --- search and recommend ----------------------------------------------------------------

def test_search_and_recommend(engine: SearchEngine, catalog) -> None:
    hits = engine.search("红色波点半身裙", k=5, rerank=8)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(Path(h.image).is_file() and h.title for h in hits)
    plain = engine.search("红色波点半身裙", k=5, rerank=0)
    assert len(plain) == 5 and plain[0].score >= plain[-1].score
    assert {h.item_id for h in engine.search("红色波点半身裙", k=8, rerank=8)} == \
        {h.item_id for h in engine.search("红色波点半身裙", k=8, rerank=0)}  # rerank reorders the same 8
    ids = engine.tokenizer.encode_words(engine.clean_query("红色波点半身裙")).ids
    input_ids = torch.tensor([[engine.tokenizer.cls_id, *ids, engine.tokenizer.sep_id]])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=engine.bf16):
        query = engine.model.encode_text(input_ids, torch.ones_like(input_ids, dtype=torch.bool)).float().numpy()[0]
    for target in ("image", "item"):  # vector search alone: the nearest vectors of that kind
        hits = engine.search("红色波点半身裙", k=3, rerank=0, target=target)
        brute = np.argsort(-(np.asarray(engine.index.vectors[target], dtype=np.float32) @ query))[:3]
        assert [h.item_id for h in hits] == [engine.index.item_ids[i] for i in brute]
    assert [h.item_id for h in engine.search("红色波点半身裙", k=5, rerank=0)] == \
        [h.item_id for h in engine.search("红色波点半身裙", k=5, rerank=0, target="item")]  # the default
    for target, rerank in DEFAULT_RERANK.items():  # without --rerank: ITM for photos, not for listings
        assert [(h.item_id, h.score) for h in engine.search("红色波点半身裙", k=5, target=target)] == \
            [(h.item_id, h.score) for h in engine.search("红色波点半身裙", k=5, rerank=rerank, target=target)]
    assert DEFAULT_RERANK == {"image": 16, "item": 0}
    with pytest.raises(TaommError, match="target"):
        engine.search("红色波点半身裙", target="title")
    similar = engine.recommend("p00003", k=5)
    assert len(similar) == 5 and "p00003" not in {h.item_id for h in similar}
    with pytest.raises(TaommError, match="unknown item id"):
        engine.recommend("nope")


@pytest.mark.parametrize(("query", "message"), [("<p> </p>", "empty"), ("hello world", "no Chinese"),
                                                ("加微信领红包", "spam"), ("裙" * 80, "longer than")])
def test_bad_queries(engine: SearchEngine, query: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        engine.search(query)


def test_cli_in_a_workspace(catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["init", "ws", "--preset", "tiny", "--manifest", str(catalog["manifest"])]).exit_code == 0
    ws = tmp_path / "ws"
    (ws / "store").symlink_to(catalog["store"], target_is_directory=True)
    (ws / "runs").mkdir()
    (ws / "runs" / "retrieval").symlink_to(catalog["model"], target_is_directory=True)
    monkeypatch.chdir(ws)
    exported = runner.invoke(app, ["export-embeddings", "--fp32", "--json"])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["items"] == 40 and (ws / "index" / "current").is_symlink()
    found = runner.invoke(app, ["search", "波点荷叶边裙", "--json"])
    assert found.exit_code == 0, found.output
    rows = json.loads(found.stdout)
    assert len(rows) == 10 and set(rows[0]) == {"item_id", "title", "image", "score"}
    table = runner.invoke(app, ["search", "波点荷叶边裙", "--k", "3", "--no-rerank"])
    assert table.exit_code == 0 and "item_id" in table.stdout
    similar = runner.invoke(app, ["recommend", rows[0]["item_id"], "--k", "3", "--json"])
    assert similar.exit_code == 0 and len(json.loads(similar.stdout)) == 3
    assert_one_line_error(runner.invoke(app, ["recommend", "nope"]), 1, "unknown item id")
    assert_one_line_error(runner.invoke(app, ["search", "加微信领红包"]), 1, "spam")
    assert_one_line_error(runner.invoke(app, ["search", "   "]), 1, "empty")
    assert_one_line_error(runner.invoke(app, ["serve", "--index", str(tmp_path / "none")]), 1, "export-embeddings")


# --- integrity ---------------------------------------------------------------------------

def flip_byte(path: Path, offset: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip image.faiss", "truncate ids.json", "delete item.faiss",
                                    "flip item_vectors.npy", "edit items.jsonl", "manifest count",
                                    "manifest garbage"])
def test_tampered_index_is_refused(catalog, tmp_path: Path, damage: str) -> None:
    out = copy_index(catalog, tmp_path)
    version = (out / "current").resolve()
    action, name = damage.split(" ", 1)
    if action == "flip":
        flip_byte(version / name)
    elif action == "truncate":
        (version / name).write_bytes((version / name).read_bytes()[:-5])
    elif action == "delete":
        (version / name).unlink()
    elif action == "edit":
        text = (version / name).read_text("utf-8").replace("p00001", "p99999")
        (version / name).write_text(text, "utf-8")
    elif name == "count":
        manifest = json.loads((version / "manifest.json").read_text())
        manifest["count"] = 39
        (version / "manifest.json").write_text(json.dumps(manifest))
    else:
        (version / "manifest.json").write_text("{not json")
    with pytest.raises(TaommError) as err:
        open_index(out)
    expected = "manifest.json" if name in ("count", "garbage") else name
    assert expected in str(err.value)
    runner = CliRunner()
    result = runner.invoke(app, ["search", "红色半身裙", "--index", str(out)])
    assert result.exit_code == 1 and "taomm: error:" in result.stderr and expected in result.stderr


def test_index_of_another_model_is_refused(catalog, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(catalog["model"], model)
    out = tmp_path / "index"
    export_index(model, catalog["store"], out, bf16=False)
    retrained = InterBertForRetrieval.from_pretrained(model)
    with torch.no_grad():
        retrained.contrastive.text_proj.weight.add_(1.0)
    retrained.save_pretrained(model)
    with pytest.raises(TaommError, match="not the model the index was exported with"):
        SearchEngine(out, device="cpu")


# --- the server --------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """``app`` served by uvicorn on a loopback port, in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.02)
    assert srv.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(engine: SearchEngine):
    from taomm.serve import create_app

    with serving(create_app(engine, max_concurrency=2)) as base:
        yield base


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("content-type", "")


def test_server_endpoints(server: str) -> None:
    status, body, _ = get(server + "/health")
    assert status == 200 and json.loads(body)["items"] == 40
    status, body, _ = get(server + "/api/search?q=" + urllib.parse.quote("红色波点半身裙") + "&k=4")
    assert status == 200
    results = json.loads(body)["results"]
    assert len(results) == 4 and results[0]["image_url"].startswith("/images/")
    status, image, ctype = get(server + results[0]["image_url"])
    assert status == 200 and ctype == "image/png" and image[:4] == b"\x89PNG"
    status, body, _ = get(server + "/api/recommend?item_id=" + results[0]["item_id"] + "&k=3")
    assert status == 200 and len(json.loads(body)["results"]) == 3
    status, page, ctype = get(server + "/")
    assert status == 200 and "text/html" in ctype and b"search-form" in page
    assert get(server + "/api/search?q=" + urllib.parse.quote("裙" * 65))[0] == 422
    assert get(server + "/api/search?q=" + urllib.parse.quote("加微信领红包"))[0] == 422
    assert get(server + "/api/recommend?item_id=nope")[0] == 404
    assert get(server + "/images/nope")[0] == 404


def test_server_never_answers_5xx(server: str) -> None:
    rng = np.random.default_rng(0)
    alphabet = [*"裙红色波点abc!@#%&*()[]{}<>/\\'\"\t\n\x00 ", "\u202e", "😀", "\ufffd", "%", "%%", ".."]
    paths = ["/api/search?q=", "/api/search?k=-1&q=", "/api/search?k=abc&q=", "/api/search?rerank=1000&q=",
             "/api/recommend?item_id=", "/api/recommend?k=0&item_id=", "/images/", "/images/../../etc/passwd?x=",
             "/nowhere/"]
    for i in range(150):
        junk = "".join(rng.choice(alphabet, int(rng.integers(0, 80))))
        url = server + paths[i % len(paths)] + urllib.parse.quote(junk, safe="")
        status = get(url)[0]
        assert status < 500, (url, status)
    # concurrent clients: every one answered, none with a server error
    statuses: list[int] = []

    def client() -> None:
        for _ in range(3):
            statuses.append(get(server + "/api/search?q=" + urllib.parse.quote("蓝色格子衬衫") + "&k=5")[0])
    threads = [threading.Thread(target=client) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 36


def chromium_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.skipif(chromium_paths() is None, reason="needs the Debian packages chromium and chromium-driver "
                    "(.ci/run installs them)")
def test_web_page_in_headless_chromium(server: str) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(server + "/")
        box = driver.find_element(By.ID, "query")
        box.send_keys("红色波点半身裙")
        box.send_keys(Keys.ENTER)

        def loaded_images(d):
            images = d.find_elements(By.CSS_SELECTOR, "#results img.result-img")
            done = [img for img in images if d.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0", img)]
            return done if len(done) >= 5 else False
        images = WebDriverWait(driver, 30).until(loaded_images)
        assert len(images) >= 5
        driver.find_elements(By.CSS_SELECTOR, "#results .card")[0].click()
        WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#similar .card")) == 5)
        assert driver.find_element(By.ID, "similar-title").is_displayed()
    finally:
        driver.quit()
