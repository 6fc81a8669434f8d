"""`taomm demo --quick`: the whole pipeline end to end, resumable, leaving a usable workspace."""

from __future__ import annotations

import json
import shutil
import sys
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from taomm.cli.app import app
from taomm.datasets.retrieval import query_words
from taomm.demo import FLAGSHIP_QUERY, INDEX_STAGES, STAGES, Demo, DemoConfig, restart
from taomm.train.recipe import finetune_defaults, pretrain_defaults


@given(st.lists(st.sampled_from(["红色", "波点", " ", "荷叶边", "裙", "2020"]), max_size=12), st.integers(0, 1000),
       st.floats(0.01, 1.0))
def test_query_words_are_an_ordered_subset(words: list[str], seed: int, keep: float) -> None:
    query = query_words(words, np.random.default_rng(seed), keep)
    real = [w for w in words if w.strip()]
    if not real:
        assert query == words
        return
    assert query and all(w.strip() for w in query)
    it = iter(real)
    assert all(any(w == x for x in it) for w in query)  # a subsequence of the caption's words


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    workdir = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(app, ["demo", "--quick", "--workdir", str(workdir), "--json"])
    assert result.exit_code == 0, result.output
    return workdir, json.loads(result.stdout)


def test_quick_demo_runs_every_stage(quick_demo: tuple[Path, dict]) -> None:
    workdir, report = quick_demo
    stages = report["stages"]
    assert list(stages) == list(STAGES)
    prepare = stages["prepare"]["summary"]
    assert prepare["ok"] + prepare["quarantined"] == prepare["inputs"] == 240
    assert prepare["quarantined"] > 0 and any(r.startswith("spam:") for r in prepare["reasons"])
    assert {"colour", "pattern", "product"} <= set(prepare["probe"])  # what the stored region features carry
    assert all(0 <= row["accuracy"] <= 1 and 0 <= row["majority"] <= 1 for row in prepare["probe"].values())
    recall = stages["evaluate"]["summary"]["recall"]
    assert [row["mode"] for row in recall.values()] == ["random", "exhaustive", "rerank", "rerank"]
    assert "zero-shot (pretrained; exhaustive ITM)" in recall and "finetuned from random weights (same steps)" in recall
    assert all(0.0 <= row["R@1"] <= row["R@5"] <= row["R@10"] <= 1.0 for row in recall.values())
    baseline = stages["baseline"]["summary"]  # the finetune stage's recipe, from the random weights pretraining started from
    assert baseline["steps"] == stages["finetune"]["summary"]["steps"] and set(baseline["by_kind"]) == \
        {"colour", "pattern", "style", "product", "all"}
    runs = workdir / "runs"
    random_run = json.loads((runs / "retrieval-random" / "run.json").read_text())
    assert {k: v for k, v in random_run.items() if k not in ("init", "init_from")} == \
        {k: v for k, v in json.loads((runs / "retrieval" / "run.json").read_text()).items()
         if k not in ("init", "init_from")}
    search = stages["search"]["summary"]
    assert len(search["searches"]["波点荷叶边裙"]) == 5 and len(search["recommend"]["similar"]) == 5
    for hit in search["searches"]["波点荷叶边裙"]:
        assert Path(hit["image"]).is_file() and hit["image"].startswith(str(workdir))
    assert set(search["precision"]) == {"search", "rerank"}
    by_kind = search["by_kind"]  # title alone, photo alone, photo + title
    assert set(by_kind) == {"title", "photo", "photo + title"}
    for row in by_kind.values():
        assert set(row) == {"colour", "pattern", "style", "product", "all"}
        assert row["all"]["queries"] >= max(r["queries"] for r in row.values())
    for precision in search["precision"].values():
        assert precision["queries_all"] > 0 and 0.0 <= precision["precision@5_all"] <= 1.0
    options = json.loads((workdir / "runs" / "retrieval" / "run.json").read_text())
    assert options["query_log"]["pairs"] > 0
    scratch = finetune_defaults(from_scratch=True)  # the commands' defaults, not a recipe of the demo's own
    assert (options["train"]["lr"], options["negatives"], options["query_log"]["log_p"]) == \
        (scratch.lr, scratch.negatives, scratch.log_share)
    pretraining = json.loads((workdir / "runs" / "pretrain" / "run.json").read_text())
    assert (pretraining["train"]["lr"], pretraining["itc_weight"]) == (pretrain_defaults(True).lr, pretrain_defaults(True).itc)
    assert set(options["query_log"]["skipped"]) <= {"unknown_item"}  # items whose title was quarantined


def test_rerun_resumes_and_the_workdir_is_a_workspace(quick_demo: tuple[Path, dict],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    workdir, report = quick_demo
    runner = CliRunner()
    again = runner.invoke(app, ["demo", "--quick", "--workdir", str(workdir), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["stages"] == report["stages"]  # every stage skipped: same records
    assert json.loads(again.stdout)["seconds"] < 30
    other = runner.invoke(app, ["demo", "--workdir", str(workdir)])  # default sizes differ from --quick
    assert other.exit_code == 1 and "other settings" in other.output and "--restart" in other.output
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    found = runner.invoke(app, ["search", "波点荷叶边裙", "--json"])
    assert found.exit_code == 0, found.output
    assert len(json.loads(found.stdout)) == 10


def test_an_interrupted_stage_runs_again(tmp_path: Path) -> None:
    config = DemoConfig.quick()
    demo = Demo(tmp_path / "w", config, progress=_no_progress, index="vectors")
    demo.run("catalog")
    assert demo.pending()[0] == "detector"
    state = json.loads((tmp_path / "w" / "demo.json").read_text())
    assert list(state["stages"]) == ["catalog"] and state["config"] == config.to_json()
    assert 'index = "vectors"' in (tmp_path / "w" / "taomm.toml").read_text()
    resumed = Demo(tmp_path / "w", config, progress=_no_progress)
    assert resumed.pending() == list(STAGES[1:]) and resumed.index == str((tmp_path / "w" / "vectors").resolve())
    interrupted = Demo(tmp_path / "cut", config, progress=_failing_progress)
    with pytest.raises(KeyboardInterrupt):  # stopped while drawing, after taomm.toml was written
        interrupted.run("catalog")
    assert (tmp_path / "cut" / "taomm.toml").is_file()
    assert Demo(tmp_path / "cut", config, progress=_no_progress).pending() == list(STAGES)  # not refused
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "taomm.toml").write_text('language = "zh"\n')
    result = CliRunner().invoke(app, ["demo", "--quick", "--workdir", str(tmp_path / "shop"), "--restart"])
    assert result.exit_code == 1 and "not removing anything" in result.output  # never a user's workspace
    result = CliRunner().invoke(app, ["demo", "--quick", "--workdir", str(tmp_path / "shop")])
    assert result.exit_code == 1 and "not made by taomm demo" in result.output
    assert (tmp_path / "shop" / "taomm.toml").read_text() == 'language = "zh"\n'


def test_the_demo_on_milvus_lite_without_faiss(quick_demo: tuple[Path, dict], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18: `taomm demo --index milvus-lite:demo.db`, then export, search, recommend and
    serve in its workspace, with faiss not importable. A copy of the quick demo, whose export
    was a faiss folder: the rerun with the Milvus location exports and searches again."""
    pytest.importorskip("pymilvus", reason="the Milvus backend needs the milvus extra")
    import uvicorn
    from test_search import get, serving

    from taomm.index import open_index

    workdir, report = quick_demo
    copy = tmp_path / "demo"
    shutil.copytree(workdir, copy, symlinks=True, ignore=lambda folder, names: ["index"] if Path(folder) == workdir else [])
    # Milvus Lite notes once, when first imported, whether faiss imports (for its HNSW and IVF
    # indexes; FLAT is brute force without it): import it now, and let it see no faiss here only
    try:
        from milvus_lite.index import factory
    except ImportError:  # another Milvus Lite layout: nothing cached to restore
        factory = None
    if factory is not None and hasattr(factory, "_FAISS_AVAILABLE"):
        monkeypatch.setattr(factory, "_FAISS_AVAILABLE", False)
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` raises ImportError
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    bad = runner.invoke(app, ["demo", "--quick", "--workdir", str(copy), "--index", "milvus-lite:demo.sqlite"])
    assert bad.exit_code == 1 and ".db" in bad.output
    rerun = runner.invoke(app, ["demo", "--quick", "--workdir", str(copy), "--index", "milvus-lite:demo.db", "--json"])
    assert rerun.exit_code == 0, rerun.output
    stages = json.loads(rerun.stdout)["stages"]
    assert {k: v for k, v in stages.items() if k not in INDEX_STAGES} == \
        {k: v for k, v in report["stages"].items() if k not in INDEX_STAGES}  # only export and search ran again
    export = stages["export"]["summary"]
    assert (export["index"], export["version"], export["onnx"]) == ("milvus-lite:demo.db", "taomm_items_v0001", False)
    assert 'index = "milvus-lite:demo.db"' in (copy / "taomm.toml").read_text("utf-8")
    assert (copy / "demo.db").exists() and not (tmp_path / "demo.db").exists()  # relative to the work folder
    items = set(open_index(f"milvus-lite:{copy / 'demo.db'}").item_ids)
    assert len(items) == export["items"]
    flagship = stages["search"]["summary"]["searches"][FLAGSHIP_QUERY]
    assert len(flagship) == 5 and {h["item_id"] for h in flagship} <= items
    again = runner.invoke(app, ["demo", "--quick", "--workdir", str(copy), "--json"])  # no --index: the recorded one
    assert again.exit_code == 0 and json.loads(again.stdout)["stages"] == stages, again.output

    monkeypatch.chdir(copy)  # the workspace: no --index from here on
    found = runner.invoke(app, ["search", FLAGSHIP_QUERY, "--json"])
    assert found.exit_code == 0, found.output
    hits = [h["item_id"] for h in json.loads(found.stdout)]
    assert len(hits) == 10 and set(hits) <= items
    assert hits[:5] == [h["item_id"] for h in flagship]
    similar = runner.invoke(app, ["recommend", hits[0], "--k", "5", "--json"])
    assert similar.exit_code == 0, similar.output
    similar_ids = [h["item_id"] for h in json.loads(similar.stdout)]
    assert len(similar_ids) == 5 and set(similar_ids) <= items and hits[0] not in similar_ids
    exported = runner.invoke(app, ["export-embeddings", "--index", "milvus-lite:again.db", "--json"])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["items"] == len(items) and (copy / "again.db").exists()
    found_again = runner.invoke(app, ["search", FLAGSHIP_QUERY, "--index", "milvus-lite:again.db", "--json"])
    assert found_again.exit_code == 0 and [h["item_id"] for h in json.loads(found_again.stdout)] == hits

    served: dict[str, object] = {}

    def run(asgi, **options) -> None:  # `taomm serve` blocks in uvicorn.run: serve its app in a thread instead
        with serving(asgi) as base:
            served["health"] = json.loads(get(base + "/health")[1])
            status, body, _ = get(base + "/api/search?q=" + urllib.parse.quote(FLAGSHIP_QUERY) + "&k=5")
            served["search"] = (status, [r["item_id"] for r in json.loads(body)["results"]])
            status, body, _ = get(base + "/api/recommend?item_id=" + hits[0] + "&k=5")
            served["recommend"] = (status, [r["item_id"] for r in json.loads(body)["results"]])

    monkeypatch.setattr(uvicorn, "run", run)
    assert runner.invoke(app, ["serve"]).exit_code == 0
    assert served["health"]["items"] == len(items)
    assert served["search"] == (200, hits[:5]) and served["recommend"] == (200, similar_ids)


def test_restart_removes_the_recorded_index_in_the_work_folder_only(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.db").mkdir()
    for name, setting, index in (("lite", "milvus-lite:demo.db", "demo.db"), ("folder", "vectors", "vectors"),
                                 ("outside", f"milvus-lite:{tmp_path / 'elsewhere.db'}", None)):
        root = tmp_path / name
        root.mkdir()
        (root / "demo.json").write_text("{}")
        (root / "taomm.toml").write_text(f'[paths]\nindex = "{setting}"\n')
        if index is not None:
            (root / index / "collections").mkdir(parents=True)  # Milvus Lite's "file" is a folder
        restart(root)
        assert list(root.iterdir()) == [], name
    assert (tmp_path / "elsewhere.db").is_dir()  # not in the work folder: not the demo's


class _Advance:
    def __enter__(self):
        return lambda n: None

    def __exit__(self, *exc):
        return False


def _no_progress(label, total):
    return _Advance()


def _failing_progress(label, total):
    """A progress bar whose first step is a Ctrl-C."""
    class Interrupt(_Advance):
        def __enter__(self):
            def advance(n):
                raise KeyboardInterrupt
            return advance

    return Interrupt()
