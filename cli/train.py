"""``taomm pretrain``: InterBERT pretraining (MSM + MRM + ITM-hn), single process or torchrun."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from taomm.cli.common import (
    AccumStepsOpt,
    Bf16Opt,
    DeviceOpt,
    JsonOpt,
    KeepLastOpt,
    LogEveryOpt,
    MaxStepsOpt,
    ResumeOpt,
    SaveEveryOpt,
    SeedOpt,
    StoreOpt,
    WarmupStepsOpt,
    WorkersOpt,
    WorkspaceOpt,
    print_run_end,
    recipe_lines,
    run_summary,
    store_path,
    training_run,
)
from taomm.errors import TaommError
from taomm.workspace import PRETRAIN_DIR, Workspace, find_workspace

if TYPE_CHECKING:
    from taomm.model import InterBertConfig
    from taomm.train import TrainResult
    from taomm.train.recipe import PretrainRecipe

LangOpt = Annotated[str | None, typer.Option("--lang", help="zh or en. Default: the workspace's.")]
ConfigOpt = Annotated[str | None, typer.Option("--config", help="Model preset (base, small, mini, tiny) or a JSON "
                                               "file of config keys. Default: the workspace's preset.")]
InitFromOpt = Annotated[str | None, typer.Option("--init-from", help="BERT folder or hub name for the interaction "
                                                 "module (its vocab.txt is used). Default: the workspace's.")]
VocabOpt = Annotated[Path | None, typer.Option("--vocab", help="vocab.txt. Default: --init-from's, else the "
                                               "store's (taomm build-vocab).", dir_okay=False)]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Run folder. Default: the workspace's runs/pretrain.",
                                             file_okay=False)]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Global batch: samples per step over all "
                                           "processes (the paper: 512).")]
LrOpt = Annotated[float | None, typer.Option("--lr", help="Peak AdamW learning rate. Default: 3e-4 from scratch, "
                                             "the paper's 1e-4 with --init-from.", show_default=False)]
MaskModeOpt = Annotated[str, typer.Option("--mask-mode", help="segment (MSM: word spans) or token (plain MLM).")]
RegionMaskOpt = Annotated[str, typer.Option("--region-mask", help="iou (MRM: anchors + IoU > 0.4) or single "
                                            "(plain masked-object modeling).")]
HardNegativesOpt = Annotated[float, typer.Option("--hard-negatives", min=0.0, max=1.0, help="Share of unmatched "
                                                 "ITM pairs with a mined hard negative (0: random only).")]
ItcOpt = Annotated[float | None, typer.Option("--itc", min=0.0, help="Weight of an image-text contrastive loss "
                                              "(beyond the paper; ALBEF's align-before-fuse). 0: the paper's three "
                                              "tasks only. Default: 1 from scratch (without it ITM stays at chance), "
                                              "0 with --init-from.", show_default=False)]
SplitOpt = Annotated[str | None, typer.Option("--split", help="Store split to train on; several join with + "
                                              "(train+val). Default: train if the store has it, else every item.")]
EvalSplitOpt = Annotated[str, typer.Option("--eval-split", help="Held-out split for --eval-every (not one the "
                                           "model trains on).")]
EvalEveryOpt = Annotated[int, typer.Option("--eval-every", min=0, help="Every N steps (and at the last), the three "
                                           "tasks' accuracy on --eval-split into RUN/heldout.jsonl: held-out "
                                           "accuracy falling while training loss falls is memorisation. 0: off.")]
EvalItemsOpt = Annotated[int, typer.Option("--eval-items", min=2, help="Items of --eval-split evaluated (its first "
                                           "in store order).")]


def pretrain_command(
    lang: LangOpt = None,
    config: ConfigOpt = None,
    init_from: InitFromOpt = None,
    store: StoreOpt = None,
    vocab: VocabOpt = None,
    out: OutOpt = None,
    max_steps: MaxStepsOpt = 2000,
    batch_size: BatchSizeOpt = 32,
    accum_steps: AccumStepsOpt = 1,
    lr: LrOpt = None,
    warmup_steps: WarmupStepsOpt = None,
    save_every: SaveEveryOpt = 500,
    keep_last: KeepLastOpt = 3,
    log_every: LogEveryOpt = 10,
    resume: ResumeOpt = False,
    mask_mode: MaskModeOpt = "segment",
    region_mask: RegionMaskOpt = "iou",
    hard_negatives: HardNegativesOpt = 0.2,
    itc: ItcOpt = None,
    split: SplitOpt = None,
    eval_split: EvalSplitOpt = "val",
    eval_every: EvalEveryOpt = 0,
    eval_items: EvalItemsOpt = 512,
    workers: WorkersOpt = 2,
    seed: SeedOpt = 0,
    bf16: Bf16Opt = True,
    device: DeviceOpt = "",
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
    from taomm.train import TrainConfig
    from taomm.train.pretrain import HeldOut, pretrain

    ws = find_workspace(workspace)
    lang, store, out, init_from = _workspace_defaults(ws, lang, store, out, init_from)
    recipe, header = _recipe(init_from, lr, itc)
    model_config = _model_config(ws, config, lang)
    masking = MaskingOptions(mask_mode=mask_mode, region_mask=region_mask, hard_negative_p=hard_negatives)
    train = TrainConfig(max_steps=max_steps, batch_size=batch_size, accum_steps=accum_steps, lr=recipe.lr,
                        warmup_steps=warmup_steps, save_every=save_every, keep_last=keep_last, log_every=log_every,
                        seed=seed, workers=workers, bf16=bf16)
    _check_language(store, lang)
    with training_run(device, "pretraining", max_steps, json_out, header) as (info, on_step):
        result, model_dir = pretrain(store, out, model_config=model_config, train=train, masking=masking,
                                     init_from=init_from, vocab=vocab, split=split, resume=resume, info=info,
                                     itc_weight=recipe.itc, held_out=HeldOut(eval_split, eval_every, eval_items),
                                     on_step=on_step)
    if info.is_main:
        _print_end(out, model_dir, result, info.world_size, json_out)


def _workspace_defaults(ws: Workspace | None, lang: str | None, store: Path | None, out: Path | None,
                        init_from: str | None) -> tuple[str, Path, Path, str | None]:
    """--lang, --store, --out and --init-from, by default the workspace's."""
    lang = lang or (ws.config.language if ws else "zh")
    store = store_path(store, ws, must_exist=False)
    if out is None:
        if ws is None:
            raise TaommError("no --out and no workspace: pass --out RUN")
        out = ws.path("runs") / PRETRAIN_DIR
    if init_from is None and ws is not None and ws.config.model.init_from:
        init_from = ws.config.model.init_from
        if not Path(init_from).is_absolute() and (ws.root / init_from).exists():
            init_from = str(ws.resolve(init_from))
    return lang, store, out, init_from


def _recipe(init_from: str | None, lr: float | None, itc: float | None) -> tuple[PretrainRecipe, tuple[str, ...]]:
    """The recipe for where the model starts, --lr and --itc in place of its defaults, and its
    lines for stderr."""
    from taomm.train.recipe import resolve_pretrain

    recipe, warning = resolve_pretrain(init_from is None, lr=lr, itc=itc)
    start = "from scratch (no --init-from)" if init_from is None else f"from {init_from} (the paper's)"
    return recipe, recipe_lines(start, recipe.describe(), warning)


def _model_config(ws: Workspace | None, config: str | None, lang: str) -> InterBertConfig:
    """--config (a preset or a JSON file), by default the workspace's preset."""
    from taomm.model import InterBertConfig

    preset = ws.config.model.preset if ws else "small"
    return InterBertConfig.from_spec(config or preset, lang, default_preset=preset)


def _check_language(store: Path, lang: str) -> None:
    from taomm.datasets.sharded import open_store

    if not os.path.exists(store):
        raise TaommError(f"no feature store at {store}: run `taomm prepare` first")
    with open_store(store) as fs:
        if fs.meta.language != lang:
            raise TaommError(f"the store {store} is {fs.meta.language!r}, not --lang {lang!r}")


def _print_end(out: Path, model_dir: Path | None, result: TrainResult, world_size: int, json_out: bool) -> None:
    from taomm.train.pretrain import HELDOUT_FILE

    summary = run_summary(out, model_dir, result, world_size)
    loss = f", loss {result.last_metrics['loss']}" if "loss" in result.last_metrics else ""
    held = ""
    lines = (out / HELDOUT_FILE).read_text("utf-8").splitlines() if (out / HELDOUT_FILE).is_file() else []
    last = json.loads(lines[-1]) if lines else {}
    if last.get("step") == result.step:  # this run's last held-out line (--eval-every)
        summary["held_out"] = last
        held = (f"; held-out accuracy at step {last['step']}: MSM {last['msm_acc']:.3f}, MRM {last['mrm_acc']:.3f}, "
                f"ITM {last['itm_acc']:.3f} ({HELDOUT_FILE})")
    print_run_end(summary, json_out,
                  finished=f"pretrained to step {result.step} in {summary['seconds']} s "
                           f"({summary['samples_per_s']} samples/s{loss}); model saved to {summary['model']}{held}",
                  stopped=f"stopped at step {result.step}: checkpoint saved in {summary['run']}/checkpoints; "
                          "continue with --resume")


def register(app: typer.Typer) -> None:
    app.command("pretrain", epilog="Examples:  taomm pretrain --lang zh   |   taomm pretrain --config base "
                "--init-from bert-base-chinese --batch-size 512   |   taomm pretrain --resume --max-steps 4000"
                "   |   torchrun --nproc_per_node 8 -m taomm pretrain --lang zh")(pretrain_command)
