"""``taomm finetune-vcr``: visual commonsense reasoning (paper 3.4); ``taomm prepare --lang en --format vcr``
builds its store."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from taomm.cli.common import (
    JsonOpt,
    StoreOpt,
    WorkspaceOpt,
    log_to_stderr,
    print_json,
    run_paths,
    stderr_console,
    training_progress,
    workspace_path,
)
from taomm.cli.train import PRETRAIN_DIR, run_summary
from taomm.errors import TaommError

VCR_DIR = "vcr"


def finetune_vcr_command(
    init: Annotated[Path | None, typer.Option("--init", help="Pretraining run or model folder. Default: the "
                                              "workspace's runs/pretrain.")] = None,
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
    accum_steps: Annotated[int, typer.Option("--accum-steps", min=1)] = 1,
    lr: Annotated[float, typer.Option("--lr", help="Peak AdamW learning rate (paper: 2e-5).")] = 2e-5,
    warmup_steps: Annotated[int | None, typer.Option("--warmup-steps", min=0)] = None,
    subtask: Annotated[str, typer.Option("--subtask", help="qa (Q->A), qar (QA->R) or both.")] = "both",
    ema: Annotated[float | None, typer.Option("--ema", min=0.0, max=1.0, help="Keep, evaluate and save an "
                                              "exponential moving average of the weights with this decay "
                                              "(paper: 0.9999).")] = None,
    evaluate: Annotated[bool, typer.Option("--eval/--no-eval", help="Evaluate on val at the end "
                                           "(RUN/eval.json).")] = True,
    save_every: Annotated[int, typer.Option("--save-every", min=1)] = 500,
    keep_last: Annotated[int, typer.Option("--keep-last", min=1)] = 3,
    log_every: Annotated[int, typer.Option("--log-every", min=1)] = 10,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the latest checkpoint in --out.")] = False,
    workers: Annotated[int, typer.Option("--workers", min=0)] = 2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    bf16: Annotated[bool, typer.Option("--bf16/--fp32")] = True,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda. Default: cuda when available.")] = "",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Finetune a pretrained InterBERT on VCR: Q->A and QA->R as 4-way choices over ITM
    scores; report Q->A, QA->R and Q->AR accuracy on val.

    Same trainer as pretraining: checkpoints, --resume, SIGTERM, bf16, torchrun DDP.
    """
    from taomm.train import TrainConfig
    from taomm.train.distributed import setup, teardown
    from taomm.train.vcr import epoch_steps, finetune_vcr

    store = workspace_path(store, workspace, "store", "--store STORE")
    if not store.exists():
        raise TaommError(f"no feature store at {store}: run `taomm prepare --lang en --format vcr` first")
    init, out = run_paths(workspace, init, out, PRETRAIN_DIR, VCR_DIR)
    steps = max_steps or epoch_steps(store, epochs, batch_size, annotations)
    train = TrainConfig(max_steps=steps, batch_size=batch_size, accum_steps=accum_steps, lr=lr,
                        warmup_steps=warmup_steps, save_every=save_every, keep_last=keep_last, log_every=log_every,
                        seed=seed, workers=workers, bf16=bf16)
    info = setup(device or None)
    try:
        with log_to_stderr(logging.INFO if info.is_main else logging.WARNING), \
                training_progress("finetuning VCR", steps, info.is_main and not json_out) as on_step:
            result, model_dir, metrics = finetune_vcr(
                store, init, out, train=train, subtask=subtask, ema=ema, annotations=annotations,
                eval_split="val" if evaluate else None, resume=resume, info=info, on_step=on_step)
    finally:
        teardown()
    if not info.is_main:
        return
    summary = {**run_summary(out, model_dir, result, info.world_size), "eval": metrics}
    if json_out:
        print_json(summary)
    elif result.stopped:
        stderr_console().print(f"stopped at step {result.step}; continue with --resume")
    else:
        scores = ", ".join(f"{k} {v:.3f}" for k, v in (metrics or {}).items() if "->" in k)
        stderr_console().print(f"finetuned to step {result.step} in {summary['seconds']} s; model saved to "
                               f"{summary['model']}" + (f"; val {scores}" if scores else ""))


def register(app: typer.Typer) -> None:
    app.command("finetune-vcr", epilog="Examples:  taomm finetune-vcr --store vcr-store --init runs/pretrain "
                "--out runs/vcr --ema 0.9999   |   taomm finetune-vcr --max-steps 200 --subtask qa   |   "
                "torchrun --nproc_per_node 8 -m taomm finetune-vcr --store vcr-store")(finetune_vcr_command)
