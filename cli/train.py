"""``taomm pretrain``: InterBERT pretraining (MSM + MRM + ITM-hn), single process or torchrun."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from taomm.cli.common import (
    JsonOpt,
    StoreOpt,
    WorkspaceOpt,
    log_to_stderr,
    print_json,
    stderr_console,
    training_progress,
)
from taomm.errors import TaommError
from taomm.workspace import find_workspace

PRETRAIN_DIR = "pretrain"


def pretrain_command(
    lang: Annotated[str | None, typer.Option("--lang", help="zh or en. Default: the workspace's.")] = None,
    config: Annotated[str | None, typer.Option("--config", help="Model preset (base, small, mini, tiny) or a JSON file "
                                               "of config keys. Default: the workspace's preset.")] = None,
    init_from: Annotated[str | None, typer.Option("--init-from", help="BERT folder or hub name for the interaction "
                                                  "module (its vocab.txt is used). Default: the workspace's.")] = None,
    store: StoreOpt = None,
    vocab: Annotated[Path | None, typer.Option("--vocab", help="vocab.txt. Default: --init-from's, else the "
                                               "store's (taomm build-vocab).", dir_okay=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder. Default: the workspace's runs/pretrain.",
                                             file_okay=False)] = None,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Optimizer steps (with --resume: the new "
                                           "total).")] = 2000,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Global batch: samples per step over all "
                                            "processes (the paper: 512).")] = 32,
    accum_steps: Annotated[int, typer.Option("--accum-steps", min=1, help="Micro-batches per step and process.")] = 1,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak AdamW learning rate. Default: 3e-4 from scratch, "
                                             "the paper's 1e-4 with --init-from.", show_default=False)] = None,
    warmup_steps: Annotated[int | None, typer.Option("--warmup-steps", min=0, help="Linear warm-up. Default: 10% of "
                                                     "--max-steps, at most 10,000.")] = None,
    save_every: Annotated[int, typer.Option("--save-every", min=1, help="Checkpoint every N steps.")] = 500,
    keep_last: Annotated[int, typer.Option("--keep-last", min=1, help="Checkpoints kept.")] = 3,
    log_every: Annotated[int, typer.Option("--log-every", min=1, help="metrics.jsonl line every N steps.")] = 10,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the latest complete checkpoint in --out.")] = False,
    mask_mode: Annotated[str, typer.Option("--mask-mode", help="segment (MSM: word spans) or token (plain MLM).")]
    = "segment",
    region_mask: Annotated[str, typer.Option("--region-mask", help="iou (MRM: anchors + IoU > 0.4) or single "
                                             "(plain masked-object modeling).")] = "iou",
    hard_negatives: Annotated[float, typer.Option("--hard-negatives", min=0.0, max=1.0, help="Share of unmatched "
                                                  "ITM pairs with a mined hard negative (0: random only).")] = 0.2,
    itc: Annotated[float | None, typer.Option("--itc", min=0.0, help="Weight of an image-text contrastive loss "
                                              "(beyond the paper; ALBEF's align-before-fuse). 0: the paper's three "
                                              "tasks only. Default: 1 from scratch (without it ITM stays at chance), "
                                              "0 with --init-from.", show_default=False)] = None,
    split: Annotated[str | None, typer.Option("--split", help="Store split to train on. Default: train if the "
                                              "store has it, else every item.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=0, help="DataLoader workers per process.")] = 2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    bf16: Annotated[bool, typer.Option("--bf16/--fp32", help="bf16 autocast (weights stay fp32).")] = True,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda. Default: cuda when available.")] = "",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Pretrain InterBERT on the store: masked segment modeling, masked region modeling and
    image-text matching with TF-IDF hard negatives.

    Writes RUN/metrics.jsonl, TensorBoard scalars (RUN/tensorboard), checkpoints
    (RUN/checkpoints/step-N, the last --keep-last kept) and, at the end, RUN/model
    (save_pretrained). SIGTERM saves a checkpoint at the next step and exits 0; --resume
    continues it. For several GPUs: torchrun --nproc_per_node N -m taomm pretrain ...

    The defaults of --lr and --itc follow where the model starts: the paper's (lr 1e-4, no
    ITC) from a BERT (--init-from), the demo's measured recipe (lr 3e-4, ITC on) from scratch.
    """
    from taomm.datasets.pretraining import MaskingOptions
    from taomm.model import InterBertConfig
    from taomm.train import TrainConfig
    from taomm.train.distributed import setup, teardown
    from taomm.train.pretrain import pretrain
    from taomm.train.recipe import resolve_pretrain

    ws = find_workspace(workspace)
    lang = lang or (ws.config.language if ws else "zh")
    if store is None:
        if ws is None:
            raise TaommError("no --store and no workspace: pass --store STORE")
        store = ws.path("store")
    if out is None:
        if ws is None:
            raise TaommError("no --out and no workspace: pass --out RUN")
        out = ws.path("runs") / PRETRAIN_DIR
    if init_from is None and ws is not None and ws.config.model.init_from:
        init_from = ws.config.model.init_from
        if not Path(init_from).is_absolute() and (ws.root / init_from).exists():
            init_from = str(ws.resolve(init_from))
    recipe, warning = resolve_pretrain(init_from is None, lr=lr, itc=itc)
    preset = ws.config.model.preset if ws else "small"
    model_config = InterBertConfig.from_spec(config or preset, lang, default_preset=preset)
    masking = MaskingOptions(mask_mode=mask_mode, region_mask=region_mask, hard_negative_p=hard_negatives)
    train = TrainConfig(max_steps=max_steps, batch_size=batch_size, accum_steps=accum_steps, lr=recipe.lr,
                        warmup_steps=warmup_steps, save_every=save_every, keep_last=keep_last, log_every=log_every,
                        seed=seed, workers=workers, bf16=bf16)
    _check_language(store, lang)
    info = setup(device or None)
    console = stderr_console()
    start = "from scratch (no --init-from)" if init_from is None else f"from {init_from} (the paper's)"
    header = recipe_lines(start, recipe.describe(), warning) if info.is_main else ()
    try:
        with log_to_stderr(logging.INFO if info.is_main else logging.WARNING), \
                training_progress("pretraining", max_steps, info.is_main and not json_out, header) as on_step:
            result, model_dir = pretrain(store, out, model_config=model_config, train=train, masking=masking,
                                         init_from=init_from, vocab=vocab, split=split, resume=resume, info=info,
                                         itc_weight=recipe.itc, on_step=on_step)
    finally:
        teardown()
    if not info.is_main:
        return
    summary = run_summary(out, model_dir, result, info.world_size)
    if json_out:
        print_json(summary)
    elif result.stopped:
        console.print(f"stopped at step {result.step}: checkpoint saved in {summary['run']}/checkpoints; "
                      "continue with --resume")
    else:
        last = result.last_metrics
        loss = f", loss {last['loss']}" if "loss" in last else ""
        console.print(f"pretrained to step {result.step} in {summary['seconds']} s "
                      f"({summary['samples_per_s']} samples/s{loss}); model saved to {summary['model']}")


def recipe_lines(start: str, settings: str, warning: str | None) -> tuple[str, ...]:
    """The recipe a training command chose, one line for stderr (and its warning, one more)."""
    return (f"recipe: {start}: {settings}", *([f"taomm: warning: {warning}"] if warning else []))


def run_summary(out: Path, model_dir: Path | None, result, world_size: int) -> dict:
    """What a training command reports at the end (--json)."""
    return {"run": str(Path(out).resolve()), "model": str(model_dir.resolve()) if model_dir else None,
            "start_step": result.start_step, "step": result.step, "skipped_steps": result.skipped,
            "stopped": result.stopped, "seconds": round(result.seconds, 1),
            "samples_per_s": round(result.samples_per_s, 2), "world_size": world_size, "last": result.last_metrics}


def _check_language(store: Path, lang: str) -> None:
    from taomm.datasets.sharded import open_store

    if not os.path.exists(store):
        raise TaommError(f"no feature store at {store}: run `taomm prepare` first")
    with open_store(store) as fs:
        if fs.meta.language != lang:
            raise TaommError(f"the store {store} is {fs.meta.language!r}, not --lang {lang!r}")


def register(app: typer.Typer) -> None:
    app.command("pretrain", epilog="Examples:  taomm pretrain --lang zh   |   taomm pretrain --config base "
                "--init-from bert-base-chinese --batch-size 512   |   taomm pretrain --resume --max-steps 4000"
                "   |   torchrun --nproc_per_node 8 -m taomm pretrain --lang zh")(pretrain_command)
