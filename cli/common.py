"""Shared pieces of the CLI: error handling, workspace option, JSON output, progress bars; the
training commands' options, processes and end-of-run summary; the demo catalog."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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

from taomm.errors import OptionError, TaommError
from taomm.workspace import ENV_VAR, Workspace, find_workspace, require_workspace

if TYPE_CHECKING:
    from taomm.datasets.demo_catalog import CatalogSummary
    from taomm.train import TrainResult
    from taomm.train.distributed import DistInfo


def stderr_console() -> Console:
    # Created per call: CliRunner swaps sys.stderr between invocations.
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error on stderr; return the Exit to raise."""
    click.echo(f"taomm: error: {message}", err=True)
    return typer.Exit(code)


# The CLI's wording of library options (OptionError) where it is not ``--name`` (see OptionError.worded).
FLAGS = {
    "spec": "--config",  # InterBertConfig.from_spec
    "run": "--out",  # the run folder of every training command
    "bf16=False": "--fp32",
    "rerank=0": "--no-rerank",
    "overwrite=True": "--force",  # write_workspace (taomm init)
}


class TaommGroup(TyperGroup):
    """Turns user errors raised anywhere in a command into one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TaommError as exc:
            raise fail(exc.worded(FLAGS) if isinstance(exc, OptionError) else str(exc), exc.exit_code) from None
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


def store_path(store: Path | None, ws: Workspace | None, must_exist: bool = True) -> Path:
    """``--store``, else the workspace's store; with ``must_exist``, refused when it is not there."""
    if store is None:
        if ws is None:
            raise TaommError("no --store and no workspace: pass --store STORE")
        store = ws.path("store")
    if must_exist and not store.exists():
        raise TaommError(f"no feature store at {store}: run `taomm prepare` first")
    return store


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


# --- training commands --------------------------------------------------------------------
# Options the training commands share. The default stays at each command's parameter: they differ.
MaxStepsOpt = Annotated[int, typer.Option("--max-steps", min=1, help="Optimizer steps (with --resume: the new "
                                          "total).")]
AccumStepsOpt = Annotated[int, typer.Option("--accum-steps", min=1, help="Micro-batches per step and process.")]
WarmupStepsOpt = Annotated[int | None, typer.Option("--warmup-steps", min=0, help="Linear warm-up. Default: 10% of "
                                                    "--max-steps, at most 10,000.")]
SaveEveryOpt = Annotated[int, typer.Option("--save-every", min=1, help="Checkpoint every N steps.")]
KeepLastOpt = Annotated[int, typer.Option("--keep-last", min=1, help="Checkpoints kept.")]
LogEveryOpt = Annotated[int, typer.Option("--log-every", min=1, help="metrics.jsonl line every N steps.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the latest complete checkpoint in --out.")]
InitOpt = Annotated[Path | None, typer.Option("--init", help="Pretraining run or model folder. Default: the "
                                              "workspace's runs/pretrain.")]
WorkersOpt = Annotated[int, typer.Option("--workers", min=0, help="DataLoader workers per process.")]
SeedOpt = Annotated[int, typer.Option("--seed")]
# Also for the commands that run a model without training it.
Bf16Opt = Annotated[bool, typer.Option("--bf16/--fp32", help="bf16 autocast where the hardware has bf16 (weights "
                                       "stay fp32).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda. Default: cuda when available.")]


@contextmanager
def training_processes(device: str, timeout: timedelta | None = None) -> Iterator[DistInfo]:
    """Join the torchrun process group (or run alone) on ``--device``; yields the process's
    ``DistInfo``. The library's logs go to stderr, below warnings only from the main process;
    when ranks failed, the main process says which and the others exit 1 quietly."""
    from taomm.train.distributed import RanksFailedError, barrier, setup, teardown

    info = setup(device or None, timeout)
    try:
        with log_to_stderr(logging.INFO if info.is_main else logging.WARNING):
            yield info
    except RanksFailedError as exc:
        stop = fail(str(exc)) if info.is_main else typer.Exit(1)
        barrier(info)  # the others exit after the main process has said it: torchrun stops all at the first exit
        raise stop from None
    finally:
        teardown()


@contextmanager
def training_run(device: str, description: str, steps: int, json_out: bool,
                 header: tuple[str, ...] = ()) -> Iterator[tuple[DistInfo, Callable[[int, dict], None]]]:
    """:func:`training_processes` with the :func:`training_progress` bar (and ``header``) on the
    main process, unless --json; yields ``(info, on_step)``."""
    with training_processes(device) as info, \
            training_progress(description, steps, info.is_main and not json_out,
                              header if info.is_main else ()) as on_step:
        yield info, on_step


def recipe_lines(start: str, settings: str, warning: str | None) -> tuple[str, ...]:
    """The recipe a training command chose, one line for stderr (and its warning, one more)."""
    return (f"recipe: {start}: {settings}", *([f"taomm: warning: {warning}"] if warning else []))


def run_summary(out: Path, model_dir: Path | None, result: TrainResult, world_size: int) -> dict:
    """What a training command reports at the end (--json)."""
    return {"run": str(Path(out).resolve()), "model": str(model_dir.resolve()) if model_dir else None,
            "start_step": result.start_step, "step": result.step, "skipped_steps": result.skipped,
            "stopped": result.stopped, "seconds": round(result.seconds, 1),
            "samples_per_s": round(result.samples_per_s, 2), "world_size": world_size, "last": result.last_metrics}


def print_run_end(summary: dict, json_out: bool, finished: str, stopped: str | None = None) -> bool:
    """The end of a training run: ``summary`` as JSON on stdout (--json), else one line on stderr,
    ``stopped`` (by default: how to continue) or ``finished``. True when it printed ``finished``,
    so that the command may add its results."""
    if json_out:
        print_json(summary)
        return False
    console = stderr_console()
    if summary["stopped"]:
        console.print(stopped or f"stopped at step {summary['step']}; continue with --resume")
        return False
    console.print(finished)
    return True


# --- the demo catalog (taomm demo-catalog, taomm init --demo) -------------------------------
CatalogItemsOpt = Annotated[int, typer.Option("--items", "-n", min=1, help="Number of products.")]
CatalogSeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives byte-identical files.")]


def build_catalog(out: Path, items: int, seed: int, image_size: int = 192, workers: int = 1,
                  overwrite: bool = False) -> CatalogSummary:
    """Generate the demo catalog into ``out`` under a progress bar."""
    from taomm.datasets.demo_catalog import generate_catalog

    with progress_bar("drawing products", items) as advance:
        return generate_catalog(out, items=items, seed=seed, image_size=image_size, workers=workers,
                                overwrite=overwrite, on_progress=advance)


def describe_catalog(summary: CatalogSummary) -> str:
    """What :func:`build_catalog` wrote, in two lines."""
    splits = ", ".join(f"{k} {v}" for k, v in summary.splits.items())
    noise = ", ".join(f"{k} {v}" for k, v in sorted(summary.title_noise.items())) or "none"
    return (f"wrote {summary.items} items ({splits}), {summary.annotations} boxes, {summary.queries} "
            f"test queries and a search log of {summary.search_log} to {summary.out}\nbad titles on purpose: {noise}")
