"""``taomm finetune-vcr``: visual commonsense reasoning (paper 3.4); ``taomm prepare --lang en --format vcr``
builds its store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from taomm.cli.common import (
    AccumStepsOpt,
    Bf16Opt,
    DeviceOpt,
    InitOpt,
    JsonOpt,
    KeepLastOpt,
    LogEveryOpt,
    ResumeOpt,
    SaveEveryOpt,
    SeedOpt,
    StoreOpt,
    WarmupStepsOpt,
    WorkersOpt,
    WorkspaceOpt,
    print_run_end,
    run_paths,
    run_summary,
    training_run,
    workspace_path,
)
from taomm.errors import TaommError
from taomm.workspace import PRETRAIN_DIR, VCR_DIR

if TYPE_CHECKING:
    from taomm.train import TrainResult


def finetune_vcr_command(
    init: InitOpt = None,
    store: StoreOpt = None,
    annotations: Annotated[Path | None, typer.Option("--annotations", help="Folder of VCR's train.jsonl and "
                                                     "val.jsonl. Default: STORE/vcr (taomm prepare --lang en --format vcr).",
                                                     file_okay=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder. Default: the workspace's runs/vcr.",
                                             file_okay=False)] = None,
    epochs: Annotated[float, typer.Option("--epochs", min=0.01, help="Passes over the training questions "
                                          "(paper: 5).")] = 5.0,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1, help="Optimizer steps (instead of "
                                                  "--epochs).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Questions per step over all processes "
                                            "(each with 4 answers and 4 rationales; paper: 32).")] = 32,
    accum_steps: AccumStepsOpt = 1,
    lr: Annotated[float, typer.Option("--lr", help="Peak AdamW learning rate (paper: 2e-5).")] = 2e-5,
    warmup_steps: WarmupStepsOpt = None,
    subtask: Annotated[str, typer.Option("--subtask", help="qa (Q->A), qar (QA->R) or both.")] = "both",
    ema: Annotated[float | None, typer.Option("--ema", min=0.0, max=1.0, help="Keep, evaluate and save an "
                                              "exponential moving average of the weights with this decay "
                                              "(paper: 0.9999).")] = None,
    evaluate: Annotated[bool, typer.Option("--eval/--no-eval", help="Evaluate on val at the end "
                                           "(RUN/eval.json).")] = True,
    save_every: SaveEveryOpt = 500,
    keep_last: KeepLastOpt = 3,
    log_every: LogEveryOpt = 10,
    resume: ResumeOpt = False,
    workers: WorkersOpt = 2,
    seed: SeedOpt = 0,
    bf16: Bf16Opt = True,
    device: DeviceOpt = "",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Finetune a pretrained InterBERT on VCR: Q->A and QA->R as 4-way choices over ITM
    scores; report Q->A, QA->R and Q->AR accuracy on val.

    Same trainer as pretraining: checkpoints, --resume, SIGTERM, bf16, torchrun DDP.
    """
    from taomm.train import TrainConfig
    from taomm.train.vcr import epoch_steps, finetune_vcr

    store = workspace_path(store, workspace, "store", "--store STORE")
    if not store.exists():
        raise TaommError(f"no feature store at {store}: run `taomm prepare --lang en --format vcr` first")
    init, out = run_paths(workspace, init, out, PRETRAIN_DIR, VCR_DIR)
    steps = max_steps or epoch_steps(store, epochs, batch_size, annotations)
    train = TrainConfig(max_steps=steps, batch_size=batch_size, accum_steps=accum_steps, lr=lr,
                        warmup_steps=warmup_steps, save_every=save_every, keep_last=keep_last, log_every=log_every,
                        seed=seed, workers=workers, bf16=bf16)
    with training_run(device, "finetuning VCR", steps, json_out) as (info, on_step):
        result, model_dir, metrics = finetune_vcr(
            store, init, out, train=train, subtask=subtask, ema=ema, annotations=annotations,
            eval_split="val" if evaluate else None, resume=resume, info=info, on_step=on_step)
    if info.is_main:
        _print_end(out, model_dir, result, info.world_size, metrics, json_out)


def _print_end(out: Path, model_dir: Path | None, result: TrainResult, world_size: int, metrics: dict | None,
               json_out: bool) -> None:
    summary = {**run_summary(out, model_dir, result, world_size), "eval": metrics}
    scores = ", ".join(f"{k} {v:.3f}" for k, v in (metrics or {}).items() if "->" in k)
    print_run_end(summary, json_out, f"finetuned to step {result.step} in {summary['seconds']} s; model saved to "
                                     f"{summary['model']}" + (f"; val {scores}" if scores else ""))


def register(app: typer.Typer) -> None:
    app.command("finetune-vcr", epilog="Examples:  taomm finetune-vcr --store vcr-store --init runs/pretrain "
                "--out runs/vcr --ema 0.9999   |   taomm finetune-vcr --max-steps 200 --subtask qa   |   "
                "torchrun --nproc_per_node 8 -m taomm finetune-vcr --store vcr-store")(finetune_vcr_command)
