"""The Milvus index backend, against a real embedded Milvus Lite (the dev extra): export,
search and recommend equal to exact faiss, the alias switch, model refusal, the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import build_pretraining_store
from PIL import Image
from test_cli import assert_one_line_error
from test_search import get, serving
from typer.testing import CliRunner

from taomm.cli.app import app
from taomm.datasets.store import FeatureStore
from taomm.errors import TaommError
from taomm.index import IndexParams, export_index, open_index
from taomm.model import InterBertConfig, InterBertForRetrieval
from taomm.search import SearchEngine
from taomm.text.tokenizer import TitleTokenizer

pytest.importorskip("pymilvus", reason="the Milvus backend needs the milvus extra (pip install 'taomm[milvus]')")

MIN_OVERLAP = 0.95  # top-10 overlap with exact faiss on the same vectors (issue 18)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """A store with its manifest, a (random) tiny retrieval model, and the same export twice:
    a faiss folder with an exact index, and a Milvus Lite collection."""
    root = tmp_path_factory.mktemp("milvus")
    store = build_pretraining_store(root / "store", count=40)
    (root / "images").mkdir()
    with FeatureStore(store) as fs:
        lines = [json.dumps({"item_id": it.item_id, "title": it.title, "image": f"images/{it.item_id}.png"},
                            ensure_ascii=False) for it in fs]
        for i, it in enumerate(fs):
            Image.new("RGB", (8, 8), (i * 6, 0, 0)).save(root / "images" / f"{it.item_id}.png")
    (root / "items.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    tok = TitleTokenizer(store / "vocab.txt")
    torch.manual_seed(0)
    model = InterBertForRetrieval(InterBertConfig.from_preset("tiny", vocab_size=len(tok), region_feature_dim=32))
    model.save_pretrained(root / "model", vocab_file=store / "vocab.txt")
    export_index(root / "model", store, root / "index", IndexParams(kind="flat"), manifest=root / "items.jsonl",
                 bf16=False)
    milvus = f"milvus-lite:{root / 'index.db'}"
    assert export_index(root / "model", store, milvus, manifest=root / "items.jsonl", bf16=False) == "taomm_items_v0001"
    return {"root": root, "store": store, "model": root / "model", "faiss": root / "index", "milvus": milvus}


@pytest.fixture(scope="module")
def engines(catalog) -> tuple[SearchEngine, SearchEngine]:
    """(faiss, milvus) engines over the same model and store."""
    return (SearchEngine(catalog["faiss"], device="cpu", bf16=False),
            SearchEngine(catalog["milvus"], device="cpu", bf16=False))


def overlap(a: list[str], b: list[str]) -> float:
    return len(set(a) & set(b)) / max(len(a), 1)


def test_export_holds_the_items_and_the_model(engines) -> None:
    exact, milvus = engines
    assert list(milvus.index.item_ids) == exact.index.item_ids  # read from Milvus in batches
    assert list(milvus.index.items) == exact.index.items  # item id, title, image, category
    manifest = milvus.index.manifest
    assert manifest["version"] == "v0001" and manifest["count"] == 40
    assert manifest["model"]["sha256"] == exact.index.manifest["model"]["sha256"]
    assert manifest["index"]["item"]["type"] == "FLAT"
    for kind in ("image", "item"):
        np.testing.assert_allclose(milvus.index.vector(kind, 7), exact.index.vector(kind, 7), atol=1e-3)


def test_search_and_recommend_equal_exact_faiss(engines) -> None:
    exact, milvus = engines
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(20, milvus.index.manifest["dims"]["item"])).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    overlaps = []
    for kind in ("image", "item"):
        _, want = exact.index.search(kind, queries, 10)
        scores, got = milvus.index.search(kind, queries, 10)
        overlaps += [overlap(list(g), list(w)) for g, w in zip(got, want, strict=True)]
        assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    for query in ("红色波点半身裙", "波点荷叶边裙", "连衣裙"):
        for target in ("image", "item"):
            a = [h.item_id for h in exact.search(query, k=10, rerank=0, target=target)]
            b = [h.item_id for h in milvus.search(query, k=10, rerank=0, target=target)]
            overlaps.append(overlap(b, a))
    for item_id in exact.index.item_ids:
        overlaps.append(overlap([h.item_id for h in milvus.recommend(item_id, k=10)],
                                [h.item_id for h in exact.recommend(item_id, k=10)]))
    assert np.mean(overlaps) >= MIN_OVERLAP and min(overlaps) >= 0.8, overlaps
    hits = milvus.search("红色波点半身裙", k=5, rerank=4)  # ITM rerank reads the store: the same as with faiss
    assert [(h.item_id, round(h.score, 4)) for h in hits] == \
        [(h.item_id, round(h.score, 4)) for h in exact.search("红色波点半身裙", k=5, rerank=4)]
    with pytest.raises(TaommError, match="unknown item id"):
        milvus.recommend("nope")


@pytest.mark.parametrize(("kind", "milvus_type"), [("hnsw", "HNSW"), ("ivfpq", "IVF_FLAT")])
def test_approximate_indexes_keep_the_exact_neighbours(engines, catalog, tmp_path: Path, kind: str,
                                                       milvus_type: str) -> None:
    exact, _ = engines
    uri = f"milvus-lite:{tmp_path / 'approx.db'}"
    export_index(catalog["model"], catalog["store"], uri, IndexParams(kind=kind, ivf_nlist=4, pq_m=4), bf16=False)
    approx = SearchEngine(uri, device="cpu", bf16=False)
    assert approx.index.manifest["index"]["item"]["type"] == milvus_type
    found = [overlap([h.item_id for h in approx.recommend(i, k=10)], [h.item_id for h in exact.recommend(i, k=10)])
             for i in exact.index.item_ids]
    assert np.mean(found) >= MIN_OVERLAP, found


def test_each_export_is_a_new_collection_made_current_by_the_alias(catalog, tmp_path: Path) -> None:
    from pymilvus import MilvusClient

    db = tmp_path / "alias.db"
    uri = f"milvus-lite:{db}"
    assert export_index(catalog["model"], catalog["store"], uri, bf16=False) == "taomm_items_v0001"
    reader = SearchEngine(uri, device="cpu")
    assert export_index(catalog["model"], catalog["store"], uri, bf16=False) == "taomm_items_v0002"
    client = MilvusClient(str(db))
    assert client.describe_alias("taomm_items")["collection_name"] == "taomm_items_v0002"
    assert sorted(client.list_collections()) == ["taomm_items_v0001", "taomm_items_v0002"]  # v0001 kept
    properties = client.describe_collection("taomm_items_v0002")["properties"]
    assert properties["taomm.version"] == "v0002"
    assert properties["taomm.model_sha256"] == json.loads(properties["taomm.manifest"])["model"]["sha256"]
    assert reader.index.collection == "taomm_items_v0001"  # an open reader keeps its version
    assert len(reader.recommend("p00003", k=3)) == 3
    assert SearchEngine(uri, device="cpu").index.manifest["version"] == "v0002"
    export_index(catalog["model"], catalog["store"], uri, bf16=False)
    assert sorted(client.list_collections()) == ["taomm_items_v0002", "taomm_items_v0003"]  # the last two stay


def test_collection_of_another_model_is_refused(catalog, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(catalog["model"], model)
    uri = f"milvus-lite:{tmp_path / 'other.db'}"
    export_index(model, catalog["store"], uri, bf16=False)
    retrained = InterBertForRetrieval.from_pretrained(model)
    with torch.no_grad():
        retrained.contrastive.text_proj.weight.add_(1.0)
    retrained.save_pretrained(model)
    with pytest.raises(TaommError, match="not the model the index was exported with"):
        SearchEngine(uri, device="cpu")
    assert_one_line_error(CliRunner().invoke(app, ["search", "红色半身裙", "--index", uri]), 1,
                          "not the model the index was exported with")


def test_bad_locations_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    assert_one_line_error(runner.invoke(app, ["search", "红色半身裙", "--index", f"milvus-lite:{tmp_path / 'x.db'}"]),
                          1, "no index at", "export-embeddings")
    assert_one_line_error(runner.invoke(app, ["search", "红色半身裙", "--index", "milvus-lite:x.sqlite"]), 1, ".db")
    assert_one_line_error(runner.invoke(app, ["recommend", "p1", "--index", "milvus://host/coll"]), 1,
                          "milvus://HOST:PORT/COLLECTION")
    locked = tmp_path / "locked.db"  # Milvus Lite: one process a file
    holder = subprocess.Popen([sys.executable, "-c", f"from pymilvus import MilvusClient; MilvusClient({str(locked)!r}); "
                               "print('ready', flush=True); input()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert_one_line_error(runner.invoke(app, ["search", "红色半身裙", "--index", f"milvus-lite:{locked}"]), 1,
                              "one process at a time")
    finally:
        holder.communicate("\n", timeout=30)


def test_cli_export_then_search_and_recommend(catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    base = ["--model", str(catalog["model"]), "--store", str(catalog["store"]), "--fp32"]
    exported = runner.invoke(app, ["export-embeddings", *base, "--index", "milvus-lite:cli.db", "--json"])
    assert exported.exit_code == 0, exported.output
    summary = json.loads(exported.stdout)
    assert summary["items"] == 40 and summary["version"] == "v0001" and summary["index"] == "milvus-lite:cli.db"
    assert_one_line_error(runner.invoke(app, ["export-embeddings", *base, "--index", "milvus-lite:cli.db", "--onnx"]),
                          1, "--onnx")
    found = runner.invoke(app, ["search", "--index", "milvus-lite:cli.db", "波点荷叶边裙", "--json"])
    assert found.exit_code == 0, found.output
    rows = json.loads(found.stdout)
    assert len(rows) == 10 and set(rows[0]) == {"item_id", "title", "image", "score"}
    similar = runner.invoke(app, ["recommend", rows[0]["item_id"], "--index", "milvus-lite:cli.db", "--k", "3",
                                  "--json"])
    assert similar.exit_code == 0 and len(json.loads(similar.stdout)) == 3


def test_workspace_index_setting_names_a_milvus_lite_file(catalog, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["init", "ws", "--preset", "tiny"]).exit_code == 0
    ws = tmp_path / "ws"
    config = (ws / "taomm.toml").read_text("utf-8")
    assert 'index = "index"' in config
    (ws / "taomm.toml").write_text(config.replace('index = "index"', 'index = "milvus-lite:vectors.db"'), "utf-8")
    (ws / "store").symlink_to(catalog["store"], target_is_directory=True)
    (ws / "runs").mkdir()
    (ws / "runs" / "retrieval").symlink_to(catalog["model"], target_is_directory=True)
    monkeypatch.chdir(ws / "runs")  # a Lite path in taomm.toml is relative to the workspace, not the cwd
    exported = runner.invoke(app, ["export-embeddings", "--fp32", "--json"])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["index"] == f"milvus-lite:{ws.resolve() / 'vectors.db'}"
    assert (ws / "vectors.db").exists() and not (ws / "index").exists()
    found = runner.invoke(app, ["search", "波点荷叶边裙", "--k", "3", "--json"])
    assert found.exit_code == 0 and len(json.loads(found.stdout)) == 3, found.output


def test_serve_over_milvus(engines) -> None:
    from taomm.serve import create_app

    _, milvus = engines
    with serving(create_app(milvus, max_concurrency=2)) as base:
        status, body, _ = get(base + "/health")
        health = json.loads(body)
        assert status == 200 and (health["items"], health["version"]) == (40, "v0001")
        status, body, _ = get(base + "/api/search?q=" + urllib.parse.quote("红色波点半身裙") + "&k=4")
        assert status == 200
        results = json.loads(body)["results"]
        assert [r["item_id"] for r in results] == [h.item_id for h in milvus.search("红色波点半身裙", k=4)]
        status, image, ctype = get(base + results[0]["image_url"])
        assert status == 200 and ctype == "image/png" and image[:4] == b"\x89PNG"
        status, body, _ = get(base + "/api/recommend?item_id=" + results[0]["item_id"] + "&k=3")
        assert status == 200 and len(json.loads(body)["results"]) == 3
        assert get(base + "/api/recommend?item_id=nope")[0] == 404


def test_a_reader_reads_metadata_on_demand_and_keeps_a_bounded_cache(engines, catalog,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # A catalog that outgrows one host must not be read whole into every search process:
    # the reader keeps at most CACHED_ITEMS rows' metadata, whatever it has been asked.
    from taomm import milvus_index

    exact, _ = engines
    monkeypatch.setattr(milvus_index, "CACHED_ITEMS", 5)
    index = open_index(catalog["milvus"])
    assert len(index) == 40 and len(index.items) == 40 and len(index.rows) == 40
    for row in (39, 0, 7, 7, 12, 33, 21, 5, 18):
        assert index.items[row] == exact.index.items[row] and index.item_ids[row] == exact.index.item_ids[row]
    assert index.items[2:5] == exact.index.items[2:5] and index.item_ids[-1] == exact.index.item_ids[-1]
    assert len(index._cache) == 5
    for item_id in exact.index.item_ids[::7]:
        assert index.rows[item_id] == exact.index.rows[item_id] and item_id in index.rows
    assert list(index.rows) == exact.index.item_ids
    np.testing.assert_array_equal(index.category_ids(), exact.index.category_ids())
    # An item id is one string literal in Milvus's filter, whatever quotes it holds.
    for odd in ('nope" or row >= 0 or item_id == "', "x' or row >= 0", 'a\\" or true or "', "\n", ""):
        assert index.rows.get(odd) is None and odd not in index.rows
    with pytest.raises(KeyError):
        index.rows["nope"]
    with pytest.raises(IndexError):
        index.items[40]
    _, rows = index.search("item", index.vector("item", 3), 4)  # hits bring their metadata along
    assert rows[0][0] == 3 and all(int(r) in index._cache for r in rows[0])
