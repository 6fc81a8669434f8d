"""`taomm demo --quick`: the whole pipeline end to end, resumable, leaving a usable workspace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from taomm.cli.app import app
from taomm.datasets.retrieval import query_words
from taomm.demo import STAGES, Demo, DemoConfig
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
    assert set(recall) == {"random", "zero-shot (pretrained)", "finetuned"}
    assert all(0.0 <= row["R@1"] <= row["R@5"] <= row["R@10"] <= 1.0 for row in recall.values())
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
    demo = Demo(tmp_path / "w", config, progress=_no_progress)
    demo.run("catalog")
    assert demo.pending()[0] == "detector"
    state = json.loads((tmp_path / "w" / "demo.json").read_text())
    assert list(state["stages"]) == ["catalog"] and state["config"] == config.to_json()
    assert Demo(tmp_path / "w", config, progress=_no_progress).pending() == list(STAGES[1:])
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "taomm.toml").write_text('language = "zh"\n')
    result = CliRunner().invoke(app, ["demo", "--quick", "--workdir", str(tmp_path / "shop"), "--restart"])
    assert result.exit_code == 1 and "not removing anything" in result.output  # never a user's workspace
    result = CliRunner().invoke(app, ["demo", "--quick", "--workdir", str(tmp_path / "shop")])
    assert result.exit_code == 1 and "not made by taomm demo" in result.output
    assert (tmp_path / "shop" / "taomm.toml").read_text() == 'language = "zh"\n'


class _Advance:
    def __enter__(self):
        return lambda n: None

    def __exit__(self, *exc):
        return False


def _no_progress(label, total):
    return _Advance()
