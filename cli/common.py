"""Shared pieces of the CLI: error handling, workspace option, JSON output, progress bars."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from typer.core import TyperGroup

from taomm.errors import TaommError
from taomm.workspace import ENV_VAR, find_workspace, require_workspace


def stderr_console() -> Console:
    # Created per call: CliRunner swaps sys.stderr between invocations.
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error on stderr; return the Exit to raise."""
    click.echo(f"taomm: error: {message}", err=True)
    return typer.Exit(code)


class TaommGroup(TyperGroup):
    """Turns user errors raised anywhere in a command into one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TaommError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except OSError as exc:  # missing file, permission denied, disk full ...
            raise fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None


WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", envvar=ENV_VAR, show_envvar=True, file_okay=False,
                 help="Workspace folder (holding taomm.toml). Default: the current folder or a parent."),
]
StoreOpt = Annotated[Path | None, typer.Option("--store", help="Feature store. Default: the workspace's.",
                                               file_okay=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (logs go to stderr).")]


def workspace_path(explicit_path: Path | None, workspace: Path | None, name: str, flag: str) -> Path:
    """A path given on the command line, else the workspace's ``paths.<name>``."""
    if explicit_path is not None:
        return explicit_path
    return require_workspace(workspace, needed_for=flag).path(name)


QueryLogOpt = Annotated[Path | None, typer.Option(
    "--query-log", dir_okay=False, help="Query log: JSON lines {\"query\", \"item_id\"}, what shoppers searched and "
    "chose. Default: the workspace's sources.query_log when the file exists.")]


def query_log_path(explicit_path: Path | None, workspace: Path | None) -> Path | None:
    """``--query-log``, else the workspace's ``sources.query_log`` if that file exists."""
    if explicit_path is not None:
        if not explicit_path.is_file():
            raise TaommError(f"query log {explicit_path} does not exist")
        return explicit_path
    ws = find_workspace(workspace)
    source = ws.source("query_log") if ws else None
    return source if source is not None and source.is_file() else None


def run_paths(workspace: Path | None, init: Path | None, out: Path | None, init_name: str,
              out_name: str) -> tuple[Path, Path]:
    """A finetuning command's ``--init`` and ``--out``, by default the workspace's
    ``runs/<init_name>`` and ``runs/<out_name>``."""
    if init is None or out is None:
        ws = find_workspace(workspace)
        if ws is None:
            missing = "--init RUN_OR_MODEL" if init is None else "--out RUN"
            raise TaommError(f"no {missing.split()[0]} and no workspace: pass {missing}")
        init = init or ws.path("runs") / init_name
        out = out or ws.path("runs") / out_name
    return init, out


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@contextmanager
def log_to_stderr(level: int = logging.INFO) -> Iterator[None]:
    """Show the library's log records (``taomm.*`` loggers) on stderr while a command runs."""
    logger = logging.getLogger("taomm")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields ``advance(n)``. Quiet when stderr is not a terminal."""
    console = stderr_console()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


@contextmanager
def training_progress(description: str, total: int, enabled: bool = True,
                      header: tuple[str, ...] = ()) -> Iterator[Callable[[int, dict], None]]:
    """A progress bar over training steps that shows the latest logged loss; yields
    ``on_step(step, metrics)``. Quiet when disabled or when stderr is not a terminal. The
    ``header`` lines go to stderr at the first step, so a user error before it stays one line."""
    console = stderr_console()
    columns = (TextColumn(description), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not (enabled and console.is_terminal)) as progress:
        task = progress.add_task(description, total=total, loss="")
        pending = list(header)

        def on_step(step: int, metrics: dict) -> None:
            while pending:
                progress.console.print(pending.pop(0), markup=False, highlight=False)
            loss = metrics.get("loss")
            progress.update(task, completed=step, loss=f"loss {loss:.4f}" if isinstance(loss, float) else "")
        yield on_step
