"""Workspace discovery and the typed taomm.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from taomm.errors import ConfigError, WorkspaceNotFoundError
from taomm.workspace import (
    Paths,
    Sources,
    WorkspaceConfig,
    find_workspace,
    load_workspace,
    require_workspace,
    write_workspace,
)


def test_round_trip(tmp_path: Path) -> None:
    config = WorkspaceConfig(language="en", sources=Sources(manifest="data/items.jsonl"), paths=Paths(store="s"))
    write_workspace(tmp_path, config)
    ws = load_workspace(tmp_path)
    assert ws.config == config
    assert ws.path("store") == tmp_path.resolve() / "s"
    assert ws.source("manifest") == tmp_path.resolve() / "data" / "items.jsonl"
    assert ws.source("queries") is None


def test_found_in_a_parent_and_by_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_workspace(tmp_path / "ws", WorkspaceConfig())
    deep = tmp_path / "ws" / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    assert find_workspace(start=deep).root == (tmp_path / "ws").resolve()
    assert find_workspace(start=tmp_path) is None
    monkeypatch.setenv("TAOMM_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.chdir(tmp_path)
    assert find_workspace().root == (tmp_path / "ws").resolve()
    with pytest.raises(WorkspaceNotFoundError):
        find_workspace(tmp_path)  # an explicit folder must hold taomm.toml


def test_missing_workspace_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAOMM_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkspaceNotFoundError, match="taomm init") as info:
        require_workspace(None, needed_for="a STORE path")
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('language = "fr"\n', "language must be one of"),
        ('lang = "zh"\n', "unknown key 'lang'"),
        ('[paths]\nstor = "x"\n', "unknown key 'paths.stor'"),
        ('[paths]\nstore = 3\n', "must be a str"),
        ('paths = "x"\n', "must be a table"),
        ("[paths\n", "taomm.toml"),
    ],
)
def test_bad_config(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "taomm.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_workspace(tmp_path)


def test_no_overwrite_without_force(tmp_path: Path) -> None:
    write_workspace(tmp_path, WorkspaceConfig())
    with pytest.raises(ConfigError, match="already exists"):
        write_workspace(tmp_path, WorkspaceConfig())
    write_workspace(tmp_path, WorkspaceConfig(language="en"), overwrite=True)
    assert load_workspace(tmp_path).config.language == "en"


def test_toml_escapes_strings(tmp_path: Path) -> None:
    config = WorkspaceConfig(sources=Sources(manifest='we"ird\\路径/items.jsonl'))
    write_workspace(tmp_path, config)
    assert load_workspace(tmp_path).config == config


@pytest.mark.parametrize(("setting", "expected"), [
    (None, "{root}/index"),  # an older taomm.toml: the faiss folder
    ("vectors", "{root}/vectors"),
    ("milvus-lite:db/items.db", "milvus-lite:{root}/db/items.db"),  # relative to the workspace
    ("milvus://milvus.internal:19530/shop", "milvus://milvus.internal:19530/shop"),
])
def test_index_setting_is_a_folder_or_a_milvus_uri(tmp_path: Path, setting: str | None, expected: str) -> None:
    paths = Paths() if setting is None else Paths(index=setting)
    write_workspace(tmp_path, WorkspaceConfig(paths=paths))
    assert load_workspace(tmp_path).index_location() == expected.format(root=tmp_path.resolve())
