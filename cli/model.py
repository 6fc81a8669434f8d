"""``taomm model-info``: what a model preset (or checkpoint) is made of."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taomm.cli.common import JsonOpt, print_json


def model_info(
    preset: Annotated[str, typer.Option("--preset", help="base (the paper's), small, mini or tiny.")] = "base",
    lang: Annotated[str, typer.Option("--lang", help="zh (bert-base-chinese vocab, 33 classes) or en.")] = "zh",
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", help="A saved model folder instead of a preset.",
                                                    file_okay=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Parameter counts per part of the pretraining model: embeddings, interaction layers,
    each extractor, heads, and the total."""
    from taomm.model import InterBertConfig, InterBertForPretraining, count_parameters

    if checkpoint is not None:
        config = InterBertConfig.from_json_file(checkpoint / "config.json")
    else:
        config = InterBertConfig.from_preset(preset, lang)
    counts = count_parameters(InterBertForPretraining(config))
    embeddings = counts["text embeddings"]
    summary = {"preset": None if checkpoint else preset, "lang": lang, "config": config.to_dict(),
               "parameters": counts, "total_without_text_embeddings": counts["total"] - embeddings}
    if json_out:
        print_json(summary)
        return
    width = max(map(len, counts))
    for part, n in counts.items():
        typer.echo(f"{part:<{width}}  {n:>13,}  ({n / 1e6:.1f}M)")
    typer.echo(f"{'(total without word/position embeddings)':<{width}}  "
               f"{summary['total_without_text_embeddings']:>13,}")


def register(app: typer.Typer) -> None:
    app.command("model-info", epilog="Examples:  taomm model-info --preset base --lang zh   |   "
                "taomm model-info --preset small --json")(model_info)
