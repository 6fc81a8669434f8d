"""``taomm demo-catalog``: generate the synthetic product catalog."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from taomm.cli.common import JsonOpt, print_json, progress_bar, stderr_console
from taomm.datasets.demo_catalog import CatalogSummary, generate_catalog

ItemsOpt = Annotated[int, typer.Option("--items", "-n", min=1, help="Number of products.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives byte-identical files.")]


def build_catalog(out: Path, items: int, seed: int, image_size: int = 192, workers: int = 1,
                  overwrite: bool = False) -> CatalogSummary:
    with progress_bar("drawing products", items) as advance:
        return generate_catalog(out, items=items, seed=seed, image_size=image_size, workers=workers,
                                overwrite=overwrite, on_progress=advance)


def describe(summary: CatalogSummary) -> str:
    splits = ", ".join(f"{k} {v}" for k, v in summary.splits.items())
    noise = ", ".join(f"{k} {v}" for k, v in sorted(summary.title_noise.items())) or "none"
    return (f"wrote {summary.items} items ({splits}), {summary.annotations} boxes, {summary.queries} "
            f"test queries and a search log of {summary.search_log} to {summary.out}\nbad titles on purpose: {noise}")


def demo_catalog(
    out: Annotated[Path, typer.Argument(help="Folder to write the catalog to.", file_okay=False)],
    items: ItemsOpt = 2000,
    seed: SeedOpt = 0,
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
        stderr_console().print(describe(summary))


def register(app: typer.Typer) -> None:
    app.command("demo-catalog", epilog="Example:  taomm demo-catalog catalog --items 2000 --seed 0")(demo_catalog)
