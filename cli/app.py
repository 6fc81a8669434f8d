"""The ``taomm`` command: one Typer app, one module per command group."""

from __future__ import annotations

from typing import Annotated

import typer

from taomm import __version__
from taomm.cli import catalog as catalog
from taomm.cli import demo as demo
from taomm.cli import detector as detector
from taomm.cli import glue as glue
from taomm.cli import mining as mining
from taomm.cli import model as model
from taomm.cli import prepare as prepare
from taomm.cli import retrieval as retrieval
from taomm.cli import search as search
from taomm.cli import store as store
from taomm.cli import text as text
from taomm.cli import train as train
from taomm.cli import vcr as vcr
from taomm.cli import workspace as workspace
from taomm.cli.common import TaommGroup

app = typer.Typer(
    name="taomm",
    cls=TaommGroup,
    help="Chinese e-commerce multimodal learning with InterBERT: from product listings "
    "(photo + title) to a searchable item index.",
    epilog="Start with:  taomm init demo --demo",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"taomm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Chinese e-commerce multimodal learning with InterBERT."""


demo.register(app)
workspace.register(app)
catalog.register(app)
detector.register(app)
store.register(app)
mining.register(app)
model.register(app)
prepare.register(app)
text.register(app)
train.register(app)
retrieval.register(app)
vcr.register(app)
glue.register(app)
search.register(app)


def main() -> None:
    app()
