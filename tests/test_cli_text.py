"""`taomm clean-titles` and `taomm build-vocab` through CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import build_store
from typer.testing import CliRunner

from taomm.cli.app import app
from taomm.datasets.store import FeatureStore


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    return CliRunner()


LINES = [
    "2020夏季新款韩版波点荷叶边半身裙女显瘦",
    json.dumps({"title": "韓版顯瘦連衣裙", "item_id": 7}, ensure_ascii=False),
    "Polka dot ruffle skirt",
    "",
    "加微信13812345678 连衣裙",
    "&lt;b&gt;新款&lt;/b&gt;连衣裙",
]


def test_clean_titles_json(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("\n".join(LINES) + "\n", "utf-8")
    result = runner.invoke(app, ["clean-titles", "t.txt", "--json", "--workers", "1"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == len(LINES)
    for row in rows:
        assert set(row) == {"input", "title", "words", "kept", "reason"}
        assert "".join(row["words"]) == row["title"]
    assert rows[0]["kept"] and rows[0]["words"][-2:] == ["女", "显瘦"]
    assert rows[1]["input"] == "韓版顯瘦連衣裙" and rows[1]["title"] == "韩版显瘦连衣裙"
    assert [r["reason"] for r in rows[2:5]] == ["no_chinese", "empty", "spam:contact"]
    assert rows[5]["title"] == "新款 连衣裙"
    assert "6 titles: 3 kept" in result.stderr and "spam:contact 1" in result.stderr


def test_clean_titles_plain_from_stdin(runner: CliRunner) -> None:
    result = runner.invoke(app, ["clean-titles", "-", "--workers", "2"], input="韓版顯瘦連衣裙\nhello\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["ok\t韩版 显瘦 连衣裙", "no_chinese\thello"]


def test_clean_titles_errors(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["clean-titles", "missing.txt"])
    assert result.exit_code == 1 and result.stderr.startswith("taomm: error:") and "missing.txt" in result.stderr
    (tmp_path / "bad.jsonl").write_text('{"name": "x"}\n', "utf-8")
    result = runner.invoke(app, ["clean-titles", "bad.jsonl", "--workers", "1"])
    assert result.exit_code == 1 and "bad.jsonl:1" in result.stderr and "'title'" in result.stderr


def test_build_vocab(runner: CliRunner, tmp_path: Path) -> None:
    assert runner.invoke(app, ["build-vocab"]).exit_code == 2  # no workspace, no --store
    assert runner.invoke(app, ["init", "."]).exit_code == 0
    build_store(tmp_path / "store", 40)
    result = runner.invoke(app, ["build-vocab", "--vocab-size", "100", "--min-frequency", "1", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    vocab = Path(doc["vocab"])
    assert vocab == tmp_path / "store" / "vocab.txt" and vocab.is_file()
    with FeatureStore(tmp_path / "store") as store:
        assert store.meta.tokenizer["vocab_size"] == doc["vocab_size"]
        assert store.meta.tokenizer["vocab_file"] == str(vocab)


def test_build_vocab_learns_the_query_log_too(runner: CliRunner, tmp_path: Path) -> None:
    assert runner.invoke(app, ["init", "."]).exit_code == 0
    build_store(tmp_path / "store", 40)
    with FeatureStore(tmp_path / "store") as store:
        assert not any("鑫" in item.title for item in store)
    (tmp_path / "log.jsonl").write_text("".join(json.dumps({"query": q, "item_id": "item00001"}, ensure_ascii=False)
                                                + "\n" for q in ("鑫鑫上衣", "鑫上衣")) + "not json\n", "utf-8")
    plain = runner.invoke(app, ["build-vocab", "--min-frequency", "1", "--out", "plain.txt", "--json"])
    assert plain.exit_code == 0 and json.loads(plain.stdout)["queries"] == 0
    assert "鑫" not in (tmp_path / "plain.txt").read_text("utf-8").split()
    logged = runner.invoke(app, ["build-vocab", "--min-frequency", "1", "--query-log", "log.jsonl", "--json"])
    assert logged.exit_code == 0, logged.output
    assert json.loads(logged.stdout)["queries"] == 2  # the bad line is left out
    assert "鑫" in (tmp_path / "store" / "vocab.txt").read_text("utf-8").split()
    missing = runner.invoke(app, ["build-vocab", "--query-log", "nope.jsonl"])
    assert missing.exit_code == 1 and "does not exist" in missing.output
