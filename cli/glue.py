"""``taomm finetune-glue``: text-only GLUE finetuning of a pretrained InterBERT (paper Table 6)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from taomm.cli.common import (
    Bf16Opt,
    DeviceOpt,
    JsonOpt,
    ResumeOpt,
    SeedOpt,
    WorkersOpt,
    WorkspaceOpt,
    print_run_end,
    run_paths,
    run_summary,
    training_processes,
    training_progress,
)
from taomm.workspace import PRETRAIN_DIR

if TYPE_CHECKING:
    from taomm.datasets.glue import GlueTask

TASK_NAMES = "qnli, cola, sst2, stsb, rte, mnli, qqp or mrpc"


def finetune_glue_command(
    task: Annotated[str, typer.Option("--task", help=f"GLUE task: {TASK_NAMES}.")],
    data: Annotated[Path, typer.Option("--data", help="The task's folder (train.tsv, dev.tsv), or the glue_data "
                                       "folder holding it.", file_okay=False)],
    init: Annotated[Path | None, typer.Option("--init", help="Pretrained model folder, or a run folder with "
                                              "model/. Default: the workspace's runs/pretrain.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder. Default: the workspace's runs/glue-TASK.",
                                             file_okay=False)] = None,
    epochs: Annotated[float, typer.Option("--epochs", min=0.0, help="Passes over the training set (paper: 3).")]
    = 3.0,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1, help="Optimizer steps; overrides "
                                                  "--epochs.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Examples per step over all processes "
                                            "(the paper: 128).")] = 32,
    lr: Annotated[float, typer.Option("--lr", help="Peak AdamW learning rate (paper: 2e-5).")] = 2e-5,
    max_length: Annotated[int, typer.Option("--max-length", min=4, help="Tokens per example, [CLS] and [SEP]s "
                                            "included (paper: 128).")] = 128,
    resume: ResumeOpt = False,
    workers: WorkersOpt = 2,
    seed: SeedOpt = 0,
    bf16: Bf16Opt = True,
    device: DeviceOpt = "",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Finetune a pretrained InterBERT on a GLUE task with text alone (interaction module +
    text extractor, a linear head on the text [CLS]), then score the dev set with the paper's
    metric: F1 for QQP and MRPC, Spearman for STS-B, Matthews for CoLA, accuracy otherwise.

    Writes RUN/metrics.jsonl, checkpoints, RUN/model and RUN/eval.json.
    """
    from taomm.datasets.glue import get_task
    from taomm.train import TrainConfig
    from taomm.train.glue import finetune_glue, load_glue

    spec = get_task(task)
    init, out = run_paths(workspace, init, out, PRETRAIN_DIR, f"glue-{spec.name}")
    with training_processes(device) as info:
        prepared = load_glue(spec.name, data, init, max_length=max_length, seed=seed)
        steps = max_steps or prepared.steps_for(epochs, batch_size)
        train = TrainConfig(max_steps=steps, batch_size=batch_size, lr=lr, seed=seed, workers=workers, bf16=bf16)
        with training_progress(f"finetuning {spec.folder}", steps, info.is_main and not json_out) as on_step:
            result, model_dir, scores = finetune_glue(prepared, out, train=train, resume=resume, info=info,
                                                      on_step=on_step)
    if not info.is_main:
        return
    summary = {**run_summary(out, model_dir, result, info.world_size), "train_examples": len(prepared.train),
               "train_skipped": prepared.train.skipped, "eval": scores}
    finished = (f"finetuned {spec.folder} for {result.step} steps in {summary['seconds']} s ({len(prepared.train)} "
                f"examples; malformed rows skipped: {prepared.train.skipped}); model saved to {summary['model']}")
    if print_run_end(summary, json_out, finished):
        _print_scores(spec, scores)


def _print_scores(spec: GlueTask, scores: dict) -> None:
    """One line per dev split on stdout: the paper's metric, then the others."""
    for name, split in scores["splits"].items():
        others = ", ".join(f"{k} {v:.4f}" for k, v in split.items() if k not in (spec.metric, "examples", "skipped"))
        typer.echo(f"{spec.folder} {name} {spec.metric}: {split[spec.metric]:.4f}"
                   f"{f' ({others})' if others else ''} on {split['examples']} examples")


def register(app: typer.Typer) -> None:
    app.command("finetune-glue", epilog="Examples:  taomm finetune-glue --task sst2 --data glue_data --init "
                "runs/pretrain --out runs/glue-sst2   |   taomm finetune-glue --task mnli --data glue_data/MNLI "
                "--init runs/pretrain --out runs/glue-mnli --batch-size 128 --json")(finetune_glue_command)
