"""Workspaces: a folder with a ``taomm.toml`` that lets every command run without paths.

A workspace is found, in order, from an explicit folder (``--workspace``), the
``TAOMM_WORKSPACE`` environment variable, or the current folder and its parents. Relative
paths in ``taomm.toml`` are relative to the workspace folder; every one of them can be
overridden by a command-line flag.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from taomm.errors import ConfigError, WorkspaceExistsError, WorkspaceNotFoundError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

CONFIG_NAME = "taomm.toml"
ENV_VAR = "TAOMM_WORKSPACE"
LANGUAGES = ("zh", "en")

# Folder names the commands agree on, so that each finds what another wrote without a flag.
CATALOG_DIR = "catalog"  # the demo catalog (`taomm init --demo`), in the workspace folder
# Run folders, under the workspace's runs/ path:
DETECTOR_DIR = "detector"  # `taomm train-detector`; read by `taomm prepare`
PRETRAIN_DIR = "pretrain"  # `taomm pretrain`; the default --init of every finetuning command
RETRIEVAL_DIR = "retrieval"  # `taomm finetune-retrieval`; the model `taomm search` serves
VCR_DIR = "vcr"  # `taomm finetune-vcr`


@dataclass
class Sources:
    """Where the raw data comes from."""

    manifest: str | None = None  # items.jsonl: item_id, title, image (path relative to the file)
    annotations: str | None = None  # COCO detection boxes, to train the product detector
    queries: str | None = None  # held-out queries with relevant item ids, for evaluation
    query_log: str | None = None  # what shoppers searched and chose (query, item_id), for finetuning


@dataclass
class ModelSettings:
    preset: str = "small"  # model config preset: base (paper), small, mini (CPU demo), tiny (tests)
    init_from: str | None = None  # BERT checkpoint folder or hub name to initialise from


@dataclass
class Paths:
    """Outputs of the pipeline, relative to the workspace folder."""

    store: str = "store"  # LMDB feature store written by `taomm prepare`
    runs: str = "runs"  # pretraining and finetuning runs (checkpoints, metrics)
    # exported embeddings: a faiss index folder, or a Milvus index URI, milvus-lite:PATH.db
    # (PATH relative to the workspace) or milvus://HOST:PORT/COLLECTION (taomm.milvus_index)
    index: str = "index"


@dataclass
class WorkspaceConfig:
    language: str = "zh"
    sources: Sources = field(default_factory=Sources)
    model: ModelSettings = field(default_factory=ModelSettings)
    paths: Paths = field(default_factory=Paths)

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise ConfigError(f"language must be one of {', '.join(LANGUAGES)}, not {self.language!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = CONFIG_NAME) -> WorkspaceConfig:
        """Build a config from parsed TOML, refusing unknown keys and wrong types."""
        sections = {"sources": Sources, "model": ModelSettings, "paths": Paths}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "language":
                kwargs[key] = _check_type(origin, key, value, str)
            elif key in sections:
                if not isinstance(value, dict):
                    raise ConfigError(f"{origin}: [{key}] must be a table")
                kwargs[key] = _build_section(origin, key, sections[key], value)
            else:
                raise ConfigError(f"{origin}: unknown key {key!r}")
        return cls(**kwargs)

    def to_toml(self) -> str:
        lines = ["# taomm workspace: paths are relative to this file's folder", ""]
        lines.append(f"language = {_toml_value(self.language)}")
        for name in ("sources", "model", "paths"):
            lines += ["", f"[{name}]"]
            for key, value in asdict(getattr(self, name)).items():
                if value is not None:  # TOML has no null: an absent key means "not set"
                    lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


def _check_type(origin: str, key: str, value: Any, kind: type) -> Any:
    if not isinstance(value, kind):
        raise ConfigError(f"{origin}: {key} must be a {kind.__name__}, not {type(value).__name__}")
    return value


def _build_section(origin: str, section: str, cls: type, values: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{origin}: unknown key '{section}.{key}' (known: {', '.join(sorted(known))})")
        _check_type(origin, f"{section}.{key}", value, str)
    return cls(**values)


def _toml_value(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes).
    return json.dumps(value, ensure_ascii=False)


@dataclass
class Workspace:
    root: Path
    config: WorkspaceConfig

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    def resolve(self, relative: str) -> Path:
        """A path from ``taomm.toml``, made absolute against the workspace folder."""
        return (self.root / relative).resolve()

    def path(self, name: str) -> Path:
        """One of the output paths: ``store``, ``runs`` or ``index`` (as a folder: ``index_location``
        also reads a Milvus URI)."""
        return self.resolve(getattr(self.config.paths, name))

    def index_location(self) -> str:
        """The index in effect: a faiss folder's absolute path, or a Milvus URI (a Lite file
        made absolute against the workspace folder)."""
        from taomm.milvus_index import LITE_PREFIX, SERVER_PREFIX

        value = self.config.paths.index
        if value.startswith(SERVER_PREFIX):
            return value
        if value.startswith(LITE_PREFIX):
            return LITE_PREFIX + str(self.resolve(value[len(LITE_PREFIX):]))
        return str(self.resolve(value))

    def source(self, name: str) -> Path | None:
        value = getattr(self.config.sources, name)
        return None if value is None else self.resolve(value)


def load_workspace(root: str | os.PathLike[str]) -> Workspace:
    """Read ``root/taomm.toml``."""
    root = Path(root).resolve()
    config_path = root / CONFIG_NAME
    if not config_path.is_file():
        raise WorkspaceNotFoundError(f"no {CONFIG_NAME} in {root}; create one with `taomm init {root}`")
    try:
        data = tomllib.loads(config_path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{config_path}: {exc}") from None
    return Workspace(root, WorkspaceConfig.from_dict(data, origin=str(config_path)))


def find_workspace(explicit: str | os.PathLike[str] | None = None, start: Path | None = None) -> Workspace | None:
    """The workspace in effect: ``explicit``, else ``$TAOMM_WORKSPACE``, else the nearest
    folder holding ``taomm.toml`` from ``start`` (the current folder) upwards; None if none."""
    if explicit is None:
        explicit = os.environ.get(ENV_VAR) or None
    if explicit is not None:
        return load_workspace(explicit)
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return load_workspace(folder)
    return None


def require_workspace(explicit: str | os.PathLike[str] | None, needed_for: str) -> Workspace:
    """Like :func:`find_workspace`, but a missing workspace is an error naming the fix."""
    workspace = find_workspace(explicit)
    if workspace is None:
        raise WorkspaceNotFoundError(
            f"no workspace here ({CONFIG_NAME} not found in {Path.cwd()} or its parents): "
            f"pass {needed_for}, use {{workspace}} DIR or {ENV_VAR}, or create one with `taomm init`", "workspace"
        )
    return workspace


def write_workspace(root: str | os.PathLike[str], config: WorkspaceConfig, overwrite: bool = False) -> Workspace:
    """Write ``root/taomm.toml``; refuse to replace an existing one unless ``overwrite``."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    path = root / CONFIG_NAME
    if path.exists() and not overwrite:
        raise WorkspaceExistsError(f"{path} already exists (use {{overwrite=True}} to overwrite it)", "overwrite=True")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(config.to_toml(), "utf-8")
    os.replace(tmp, path)
    return Workspace(root, config)
