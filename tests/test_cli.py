"""Every command through Typer's CliRunner: exit codes, one-line errors, --json on stdout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import build_store, content_hash
from typer.testing import CliRunner

from taomm import __version__
from taomm.cli.app import app

COMMANDS = ("init", "config", "demo-catalog", "inspect", "pretrain", "finetune-retrieval",
            "evaluate-retrieval", "export-embeddings", "search", "recommend", "serve")


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def assert_one_line_error(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taomm: error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"taomm {__version__}"


def test_no_arguments_shows_help(runner: CliRunner) -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output and all(c in result.output for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(runner: CliRunner, command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.stdout and "Example" in result.stdout and f"taomm {command}" in result.stdout


def test_init_writes_a_workspace(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", "shop", "--lang", "zh", "--manifest", "items.jsonl"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "shop" / "taomm.toml").is_file()
    assert "wrote" in result.stderr and result.stdout == ""
    again = runner.invoke(app, ["init", "shop"])
    assert_one_line_error(again, 2, "already exists", "--force")
    assert runner.invoke(app, ["init", "shop", "--force"]).exit_code == 0
    assert_one_line_error(runner.invoke(app, ["init", "x", "--lang", "fr"]), 2, "language")


def test_init_demo_generates_the_catalog(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", "demo", "--demo", "--items", "24", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["catalog"]["items"] == 24
    assert doc["config"]["sources"]["manifest"] == "catalog/items.jsonl"
    assert (tmp_path / "demo" / "catalog" / "items.jsonl").is_file()
    assert len(list((tmp_path / "demo" / "catalog" / "images").glob("*.jpg"))) == 24
    shown = runner.invoke(app, ["config", "--json", "--workspace", "demo"])
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["sources"]["manifest"] == str(tmp_path / "demo" / "catalog" / "items.jsonl")


def test_config_finds_the_workspace_from_a_subfolder_and_env(runner: CliRunner, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    assert runner.invoke(app, ["init", "ws"]).exit_code == 0
    (tmp_path / "ws" / "deep").mkdir()
    monkeypatch.chdir(tmp_path / "ws" / "deep")
    result = runner.invoke(app, ["config", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["workspace"] == str(tmp_path / "ws")
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(runner.invoke(app, ["config"]), 2, "taomm init")
    result = runner.invoke(app, ["config", "--json"], env={"TAOMM_WORKSPACE": str(tmp_path / "ws")})
    assert result.exit_code == 0 and json.loads(result.stdout)["paths"]["store"] == str(tmp_path / "ws" / "store")
    text = runner.invoke(app, ["config", "-w", "ws"])
    assert text.exit_code == 0 and "[paths]" in text.stdout


def test_broken_config_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "taomm.toml").write_text("[paths\n")
    assert_one_line_error(runner.invoke(app, ["config"]), 2, "taomm.toml")


def test_demo_catalog(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo-catalog", "cat", "--items", "16", "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["items"] == 16 and doc["images"] == 16 and sum(doc["splits"].values()) == 16
    for name in ("items.jsonl", "annotations.json", "queries.jsonl"):
        assert (tmp_path / "cat" / name).is_file()
    assert_one_line_error(runner.invoke(app, ["demo-catalog", "cat", "--items", "16"]), 1, "already holds")
    plain = runner.invoke(app, ["demo-catalog", "cat", "--items", "16", "--overwrite"])
    assert plain.exit_code == 0 and "wrote 16 items" in plain.stderr and plain.stdout == ""
    assert runner.invoke(app, ["demo-catalog", "cat2", "--items", "0"]).exit_code == 2  # usage error


def test_inspect(runner: CliRunner, tmp_path: Path) -> None:
    store = build_store(tmp_path / "mystore", 30)
    result = runner.invoke(app, ["inspect", str(store), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["items"] == 30 and doc["splits"] == {"test": 3, "train": 24, "val": 3}
    assert doc["meta"]["feature_dim"] == 32 and doc["meta"]["taxonomy"] == "taobao33"
    assert doc["content_sha256"] == content_hash(store)
    text = runner.invoke(app, ["inspect", str(store)])
    assert text.exit_code == 0 and doc["content_sha256"] in text.stdout and "train 24" in text.stdout


def test_inspect_uses_the_workspace_store(runner: CliRunner, tmp_path: Path) -> None:
    assert_one_line_error(runner.invoke(app, ["inspect"]), 2, "no workspace", "taomm init")
    assert runner.invoke(app, ["init", "."]).exit_code == 0
    assert_one_line_error(runner.invoke(app, ["inspect"]), 1, "no feature store", str(tmp_path / "store"))
    build_store(tmp_path / "store", 5)
    result = runner.invoke(app, ["inspect", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["items"] == 5
