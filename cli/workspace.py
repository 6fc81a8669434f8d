"""``taomm init`` and ``taomm config``: create and show workspaces."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from taomm.cli.common import (
    CatalogItemsOpt,
    CatalogSeedOpt,
    JsonOpt,
    WorkspaceOpt,
    build_catalog,
    describe_catalog,
    print_json,
    stderr_console,
)
from taomm.workspace import (
    CATALOG_DIR,
    LANGUAGES,
    ModelSettings,
    Sources,
    WorkspaceConfig,
    require_workspace,
    write_workspace,
)


def init(
    directory: Annotated[Path, typer.Argument(help="Workspace folder (created if missing).", file_okay=False)] = Path("."),
    demo: Annotated[bool, typer.Option("--demo", help="Also generate the demo catalog and use it as the source.")] = False,
    items: CatalogItemsOpt = 2000,
    seed: CatalogSeedOpt = 0,
    lang: Annotated[str, typer.Option("--lang", help=f"Language: {' or '.join(LANGUAGES)}.")] = "zh",
    preset: Annotated[str, typer.Option("--preset", help="Model preset: base, small, mini or tiny.")] = "small",
    manifest: Annotated[str | None, typer.Option("--manifest", help="Items manifest (JSONL), relative to DIR.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing taomm.toml.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Create a workspace: a taomm.toml that lets every command run without paths.

    With --demo, the demo catalog is generated into DIR/catalog and set as the source.
    """
    sources = Sources(manifest=manifest)
    if demo:
        sources = Sources(manifest=f"{CATALOG_DIR}/items.jsonl", annotations=f"{CATALOG_DIR}/annotations.json",
                          queries=f"{CATALOG_DIR}/queries.jsonl", query_log=f"{CATALOG_DIR}/search_log.jsonl")
    config = WorkspaceConfig(language=lang, sources=sources, model=ModelSettings(preset=preset))
    ws = write_workspace(directory, config, overwrite=force)
    summary = build_catalog(ws.root / CATALOG_DIR, items, seed, overwrite=force) if demo else None
    if json_out:
        print_json({"workspace": str(ws.root), "config": asdict(config),
                    "catalog": asdict(summary) if summary else None})
        return
    console = stderr_console()
    console.print(f"wrote {ws.config_path}")
    if summary:
        console.print(describe_catalog(summary))


def config(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Show the workspace in effect and its resolved paths."""
    ws = require_workspace(workspace, needed_for="--workspace DIR")
    resolved = {
        "workspace": str(ws.root),
        "language": ws.config.language,
        "model": asdict(ws.config.model),
        "sources": {k: str(ws.source(k)) if v else None for k, v in asdict(ws.config.sources).items()},
        "paths": {k: str(ws.path(k)) for k in asdict(ws.config.paths)},
    }
    if json_out:
        print_json(resolved)
        return
    typer.echo(ws.config_path.read_text("utf-8").rstrip())
    stderr_console().print(f"# workspace: {ws.root}")


def register(app: typer.Typer) -> None:
    app.command("init", epilog="Examples:  taomm init demo --demo   |   taomm init shop --manifest items.jsonl")(init)
    app.command("config", epilog="Example:  taomm config --json")(config)
