"""``taomm inspect``: what a feature store holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taomm.cli.common import JsonOpt, WorkspaceOpt, print_json, workspace_path
from taomm.datasets.sharded import open_store


def inspect(
    store: Annotated[Path | None, typer.Argument(help="Store folder. Default: the workspace's store.",
                                                 show_default=False)] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a feature store: item count, metadata, split sizes and its content hash.

    Two stores with the same content_sha256 hold the same records in the same order. A folder
    of shards (prepare --shard I/N, or prepare under torchrun) is read as one store; its
    items_sha256 (items, splits and metadata in item-id order, whatever the order or the
    sharding) equals that of a single store prepared from the same input.
    """
    path = workspace_path(store, workspace, "store", "a STORE path")
    with open_store(path) as fs:
        summary = fs.summary()
    if json_out:
        print_json(summary)
        return
    rows = {"store": summary["path"], "items": summary["items"], **summary["meta"],
            "splits": ", ".join(f"{k} {v}" for k, v in summary["splits"].items()) or "none",
            "content_sha256": summary["content_sha256"], "items_sha256": summary["items_sha256"]}
    width = max(map(len, rows))
    for key, value in rows.items():
        typer.echo(f"{key:<{width}}  {value}")


def register(app: typer.Typer) -> None:
    app.command("inspect", epilog="Examples:  taomm inspect   |   taomm inspect store --json")(inspect)
