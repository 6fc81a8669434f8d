"""OptionError: the library names its options as keywords, the CLI words them as flags."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from test_cli import assert_one_line_error
from typer.testing import CliRunner

from taomm.cli.app import app
from taomm.cli.common import FLAGS
from taomm.errors import (
    ConfigError,
    OptionError,
    TaommError,
    WorkspaceExistsError,
    WorkspaceNotFoundError,
)
from taomm.model import InterBertConfig


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_str_names_keywords_and_worded_names_flags() -> None:
    err = OptionError("lower {lr}, raise {max_steps} or try {bf16=False} ({resume=True}, {format=vcr})",
                      "lr", "max_steps", "bf16=False", "resume=True", "format=vcr")
    assert str(err) == "lower `lr`, raise `max_steps` or try `bf16=False` (`resume=True`, `format=vcr`)"
    assert err.worded({}) == "lower --lr, raise --max-steps or try --no-bf16 (--resume, --format vcr)"
    assert err.worded({"max_steps": "--steps"}) == (
        "lower --lr, raise --steps or try --no-bf16 (--resume, --format vcr)")
    assert isinstance(err, TaommError) and err.exit_code == 1


def test_only_the_listed_names_are_substituted() -> None:
    err = OptionError("{run} holds /data/{run}/{lr}.json and {'a': 1}; choose another {run}", "run")
    assert str(err) == "`run` holds /data/`run`/{lr}.json and {'a': 1}; choose another `run`"
    assert err.worded({"run": "--out"}) == "--out holds /data/--out/{lr}.json and {'a': 1}; choose another --out"
    assert OptionError("a {path} in {braces}").worded(FLAGS) == "a {path} in {braces}"


def test_the_cli_flags_override_the_default_spelling() -> None:
    err = OptionError("pass {resume=True} or choose another {run}; try {bf16=False} or {rerank=0}",
                      "resume=True", "run", "bf16=False", "rerank=0")
    assert err.worded(FLAGS) == "pass --resume or choose another --out; try --fp32 or --no-rerank"


def test_subclasses_keep_their_exit_codes_and_copy_whole() -> None:
    exists = WorkspaceExistsError("taomm.toml exists (use {overwrite=True})", "overwrite=True")
    assert isinstance(exists, ConfigError) and exists.exit_code == 2
    assert exists.worded(FLAGS) == "taomm.toml exists (use --force)"
    assert WorkspaceNotFoundError("no workspace").exit_code == 2
    again = copy.copy(exists)  # rebuilt from its args, as pickle (a worker process) does
    assert type(again) is WorkspaceExistsError and again.worded(FLAGS) == exists.worded(FLAGS)
    assert str(again) == str(exists) == "taomm.toml exists (use `overwrite=True`)"


def test_the_library_names_the_keyword() -> None:
    with pytest.raises(OptionError, match=r"^`spec` 'nosuchpreset' is neither a preset") as info:
        InterBertConfig.from_spec("nosuchpreset")
    assert "--" not in str(info.value)


def test_the_cli_names_the_flag(runner: CliRunner) -> None:
    result = runner.invoke(app, ["pretrain", "--config", "nosuchpreset", "--store", "s", "--out", "r"])
    assert_one_line_error(result, 1, "--config 'nosuchpreset' is neither a preset")
    assert runner.invoke(app, ["init", "shop"]).exit_code == 0
    assert_one_line_error(runner.invoke(app, ["init", "shop"]), 2, "already exists (use --force to overwrite it)")
