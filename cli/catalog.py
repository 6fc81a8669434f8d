"""``taomm demo-catalog``: generate the synthetic product catalog."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from taomm.cli.common import (
    CatalogItemsOpt,
    CatalogSeedOpt,
    JsonOpt,
    build_catalog,
    describe_catalog,
    print_json,
    stderr_console,
)


def demo_catalog(
    out: Annotated[Path, typer.Argument(help="Folder to write the catalog to.", file_okay=False)],
    items: CatalogItemsOpt = 2000,
    seed: CatalogSeedOpt = 0,
    image_size: Annotated[int, typer.Option("--image-size", help="Image side in pixels.")] = 192,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Drawing processes.")] = 1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a catalog already in OUT.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Generate the demo catalog: product drawings, seller titles, COCO boxes, test queries
    and a search log of the training items.

    Writes OUT/items.jsonl, OUT/images/*.jpg, OUT/annotations.json, OUT/queries.jsonl and
    OUT/search_log.jsonl.
    """
    summary = build_catalog(out, items, seed, image_size, workers, overwrite)
    if json_out:
        print_json(asdict(summary))
    else:
        stderr_console().print(describe_catalog(summary))


def register(app: typer.Typer) -> None:
    app.command("demo-catalog", epilog="Example:  taomm demo-catalog catalog --items 2000 --seed 0")(demo_catalog)
