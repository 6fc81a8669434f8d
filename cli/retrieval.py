"""``taomm finetune-retrieval`` and ``taomm evaluate-retrieval``."""

from __future__ import annotations

import logging
from contextlib import ExitStack
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
    MaxStepsOpt,
    QueryLogOpt,
    ResumeOpt,
    SaveEveryOpt,
    SeedOpt,
    StoreOpt,
    WarmupStepsOpt,
    WorkersOpt,
    WorkspaceOpt,
    log_to_stderr,
    print_json,
    print_run_end,
    progress_bar,
    query_log_path,
    recipe_lines,
    run_paths,
    run_summary,
    stderr_console,
    store_path,
    training_processes,
    training_run,
)
from taomm.errors import TaommError
from taomm.workspace import PRETRAIN_DIR, RETRIEVAL_DIR, find_workspace

if TYPE_CHECKING:
    import torch

    from taomm.model import InterBertForPretraining
    from taomm.train import TrainResult
    from taomm.train.recipe import FinetuneRecipe

OutOpt = Annotated[Path | None, typer.Option("--out", help="Run folder. Default: the workspace's runs/retrieval.",
                                             file_okay=False)]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Captions per step over all processes "
                                           "(each with 1 + --negatives images).")]
LrOpt = Annotated[float | None, typer.Option("--lr", help="Peak AdamW learning rate. Default: 1e-3 for a model from "
                                             "scratch, the paper's 4e-5 for one pretrained from a BERT (--init-from).",
                                             show_default=False)]
NegativesOpt = Annotated[int | None, typer.Option("--negatives", min=1, help="Negative images per caption. Default: 1 "
                                                  "from scratch (2-way ITM: twice the steps in the same time), the "
                                                  "paper's 3 from a BERT.", show_default=False)]
HardNegativesOpt = Annotated[float, typer.Option("--hard-negatives", min=0.0, max=1.0, help="Share of negative "
                                                 "images taken from the TF-IDF hard negatives.")]
ContrastiveOpt = Annotated[float, typer.Option("--contrastive", min=0.0, metavar="W", help="Weight of the contrastive "
                                               "loss of the text and image vectors (beyond the paper; 0: off).")]
ItemLossOpt = Annotated[float | None, typer.Option("--item-loss", min=0.0, metavar="W", help="Weight of the "
                                                   "item-vector loss (beyond the paper; 0: off). Default: 3 from "
                                                   "scratch, 1 from a BERT.", show_default=False)]
DropoutOpt = Annotated[float | None, typer.Option("--dropout", min=0.0, max=0.99, help="Hidden and attention "
                                                 "dropout while finetuning (recorded in the saved model's config). "
                                                 "Default: the model's own (BERT's 0.1).", show_default=False)]
TrainSplitOpt = Annotated[str | None, typer.Option("--split", help="Store split to train on (default: train).")]
LogShareOpt = Annotated[float | None, typer.Option("--log-share", min=0.0, max=1.0, help="Share of the examples of "
                                                   "a logged item whose query comes from the log (0: ignore the log). "
                                                   "Default: 0.8 from scratch, 0.5 from a BERT.", show_default=False)]


def _store_and_runs(store: Path | None, workspace: Path | None) -> tuple[Path, Path | None]:
    ws = find_workspace(workspace)
    store = store_path(store, ws)
    return store, ws.path("runs") if ws else None


def finetune_retrieval_command(
    init: InitOpt = None,
    store: StoreOpt = None,
    out: OutOpt = None,
    max_steps: MaxStepsOpt = 1000,
    batch_size: BatchSizeOpt = 32,
    accum_steps: AccumStepsOpt = 1,
    lr: LrOpt = None,
    warmup_steps: WarmupStepsOpt = None,
    negatives: NegativesOpt = None,
    hard_negatives: HardNegativesOpt = 0.5,
    contrastive: ContrastiveOpt = 1.0,
    item_loss: ItemLossOpt = None,
    save_every: SaveEveryOpt = 500,
    keep_last: KeepLastOpt = 3,
    log_every: LogEveryOpt = 10,
    resume: ResumeOpt = False,
    split: TrainSplitOpt = None,
    query_log: QueryLogOpt = None,
    log_share: LogShareOpt = None,
    dropout: DropoutOpt = None,
    workers: WorkersOpt = 2,
    seed: SeedOpt = 0,
    bf16: Bf16Opt = True,
    device: DeviceOpt = "",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Finetune a pretrained InterBERT for text-to-image retrieval: multiple-choice matching
    over ITM scores (the paper's, 4-way) plus contrastive text/image vectors for vector search.

    With a query log (--query-log, or the workspace's), the text side also trains on what
    shoppers typed for the items they chose: words sellers never write (上衣 for a T恤).

    Same trainer as pretraining: checkpoints, --resume, SIGTERM, bf16, torchrun DDP
    (in-batch negatives of the contrastive loss are gathered across processes).

    --contrastive W and --item-loss W weigh the two losses beyond the paper; both 0 train
    the paper's recipe alone (then evaluate with --exhaustive: the vectors are not finetuned).

    The defaults of --lr, --negatives, --log-share and --item-loss follow where the pretrained
    model started (its run.json's init_from): the paper's from a BERT (item loss 1), the demo's
    measured recipe (lr 1e-3, 2-way ITM, log share 0.8, item loss 3) from scratch.
    """
    from taomm.train import TrainConfig
    from taomm.train.finetune import finetune_retrieval

    store, _ = _store_and_runs(store, workspace)
    init, out = run_paths(workspace, init, out, PRETRAIN_DIR, RETRIEVAL_DIR)
    recipe, header = _recipe(init, lr, negatives, log_share, dropout, item_loss)
    query_log = query_log_path(query_log, workspace) if recipe.log_share > 0 else None
    train = TrainConfig(max_steps=max_steps, batch_size=batch_size, accum_steps=accum_steps, lr=recipe.lr,
                        warmup_steps=warmup_steps, save_every=save_every, keep_last=keep_last, log_every=log_every,
                        seed=seed, workers=workers, bf16=bf16)
    with training_run(device, "finetuning", max_steps, json_out, header) as (info, on_step):
        result, model_dir = finetune_retrieval(store, init, out, train=train, negatives=recipe.negatives,
                                               hard_p=hard_negatives, split=split, query_log=query_log,
                                               log_p=recipe.log_share, resume=resume, info=info, on_step=on_step,
                                               contrastive=contrastive, item_loss=recipe.item_loss,
                                               dropout=recipe.dropout)
    if info.is_main:
        _print_end(out, model_dir, result, info.world_size, json_out)


def _recipe(init: Path, lr: float | None, negatives: int | None, log_share: float | None,
            dropout: float | None, item_loss: float | None) -> tuple[FinetuneRecipe, tuple[str, ...]]:
    """The recipe for where the pretrained model started (its run.json's init_from), --lr,
    --negatives, --log-share, --dropout and --item-loss in place of its defaults, and its lines
    for stderr."""
    from taomm.train.recipe import initialised_from, resolve_finetune

    bert = initialised_from(init)
    recipe, warning = resolve_finetune(bert is None, lr=lr, negatives=negatives, log_share=log_share, dropout=dropout,
                                       item_loss=item_loss)
    start = f"pretrained from {bert} (the paper's)" if bert else f"from scratch ({init} records no --init-from)"
    return recipe, recipe_lines(start, recipe.describe(), warning)


def _print_end(out: Path, model_dir: Path | None, result: TrainResult, world_size: int, json_out: bool) -> None:
    summary = run_summary(out, model_dir, result, world_size)
    print_run_end(summary, json_out, f"finetuned to step {result.step} in {summary['seconds']} s; model saved to "
                                     f"{summary['model']}")


def evaluate_retrieval_command(
    model: Annotated[Path | None, typer.Option("--model", help="Model or run folder. Default: the workspace's "
                                               "runs/retrieval (with --zero-shot: runs/pretrain).")] = None,
    store: StoreOpt = None,
    split: Annotated[str, typer.Option("--split", help="Store split whose items are evaluated.")] = "test",
    zero_shot: Annotated[bool, typer.Option("--zero-shot", help="The pretrained model without finetuning "
                                            "(exhaustive ITM, the paper's zero-shot column).")] = False,
    exhaustive: Annotated[bool, typer.Option("--exhaustive", help="Score every caption-image pair with ITM.")] = False,
    rerank: Annotated[int | None, typer.Option("--rerank", min=1, help="Rerank the top K images of the contrastive "
                                               "vectors with ITM (default 16 for finetuned models).")] = None,
    baselines: Annotated[bool, typer.Option("--baselines/--no-baselines", help="Also report random ranking and the "
                                            "contrastive vectors alone.")] = True,
    items: Annotated[int | None, typer.Option("--items", min=2, help="Evaluate the first N items of the split.")]
    = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Pairs per forward pass.")] = 256,
    bf16: Bf16Opt = True,
    device: DeviceOpt = "",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Text -> image recall R@1/5/10 (and image -> text) on a split: each item's title is a
    query and its own image the answer.

    --exhaustive scores every pair with ITM; --rerank K recalls K images per caption with
    the contrastive vectors and reranks them with ITM (far fewer pairs); --zero-shot
    evaluates the pretrained model. Under torchrun each rank scores a block of the captions
    and of the images on its own device; rank 0 prints (--json lists each rank's share).
    """
    from taomm.retrieval import EVALUATION_TIMEOUT, evaluate
    from taomm.train.distributed import on_every_rank

    if exhaustive and rerank is not None:
        raise TaommError("choose one of --exhaustive and --rerank K")
    mode = "exhaustive" if (zero_shot or exhaustive) else "rerank"
    with training_processes(device, EVALUATION_TIMEOUT) as info, ExitStack() as opened:
        net, folder, tokenizer, fs, ordinals = on_every_rank(  # a missing store or model: one line from rank 0
            lambda: _open_evaluation(model, store, workspace, zero_shot, rerank, split, items, info.device, opened),
            info)
        options = dict(batch_size=batch_size, bf16=bf16, info=info)
        main = evaluate(net, fs, tokenizer, ordinals, mode, k=rerank or 16, progress=progress_bar, **options)
        result = {**main, "model": str(folder.resolve()), "split": split, "zero_shot": zero_shot}
        if baselines:
            result["baselines"] = _baselines(net, fs, tokenizer, ordinals, zero_shot, options)
    if not info.is_main:
        return
    if json_out:
        print_json(result)
        return
    _print_recall(result)


def _open_evaluation(model: Path | None, store: Path | None, workspace: Path | None, zero_shot: bool,
                     rerank: int | None, split: str, items: int | None, device: torch.device,
                     opened: ExitStack) -> tuple:
    """The model on ``device``, its folder and tokenizer, the store (open until ``opened``
    closes) and the ordinals evaluated."""
    import numpy as np

    from taomm.datasets.sharded import open_store
    from taomm.model.pretrained import VOCAB_NAME
    from taomm.text.tokenizer import TitleTokenizer

    store, runs = _store_and_runs(store, workspace)
    net, folder = _load_model(model, runs, zero_shot, rerank, device)
    fs = opened.enter_context(open_store(store))
    return net, folder, TitleTokenizer(folder / VOCAB_NAME), fs, np.sort(fs.split(split))[:items]


def _baselines(net, fs, tokenizer, ordinals, zero_shot: bool, options: dict) -> dict:
    """R@K of a random ranking and, for a finetuned model, of its contrastive vectors alone."""
    from taomm.retrieval import evaluate

    def recall(mode: str) -> dict:
        return {k: v for k, v in evaluate(net, fs, tokenizer, ordinals, mode, **options).items() if k.startswith("R@")}

    found = {"random": recall("random")}
    if not zero_shot:
        found["contrastive"] = recall("contrastive")
    return found


def _load_model(model: Path | None, runs: Path | None, zero_shot: bool, rerank: int | None,
                device: torch.device) -> tuple[InterBertForPretraining, Path]:
    """The model to evaluate on ``device`` (--model, by default the workspace's run) and its folder."""
    from taomm.model import InterBertForPretraining, InterBertForRetrieval
    from taomm.train.finetune import resolve_model_dir

    if model is None:
        if runs is None:
            raise TaommError("no --model and no workspace: pass --model DIR")
        model = runs / (PRETRAIN_DIR if zero_shot else RETRIEVAL_DIR)
    folder = resolve_model_dir(model)
    with log_to_stderr(logging.ERROR):  # a pretraining checkpoint lacks the retrieval heads: expected
        net = (InterBertForPretraining if zero_shot else InterBertForRetrieval).from_pretrained(folder)
    if zero_shot and rerank is not None:
        raise TaommError("--zero-shot evaluates a pretrained model, which has no contrastive vectors: "
                         "use --exhaustive (the default with --zero-shot)")
    if not zero_shot and net.load_report.missing:
        raise TaommError(f"{folder} lacks the retrieval heads ({net.load_report.missing[0]} ...): finetune it "
                         "with `taomm finetune-retrieval`, or evaluate it with --zero-shot")
    return net.to(device), folder


def _print_recall(result: dict) -> None:
    """The recall table on stdout: the evaluated model, then the baselines."""
    mode = result["mode"] + (f" K={result['k']}" if result["mode"] == "rerank" else "")
    rows = [(("zero-shot " if result["zero_shot"] else "") + mode, result), *result.get("baselines", {}).items()]
    stderr_console().print(f"text -> image recall on {result['items']} {result['split']} items "
                           f"({result['pairs_scored']} pairs scored in {result['seconds']} s)")
    typer.echo(f"{'':<26}{'R@1':>8}{'R@5':>8}{'R@10':>8}")
    for name, r in rows:
        typer.echo(f"{name:<26}{r['R@1']:>8.3f}{r['R@5']:>8.3f}{r['R@10']:>8.3f}")


def register(app: typer.Typer) -> None:
    app.command("finetune-retrieval", epilog="Examples:  taomm finetune-retrieval   |   taomm finetune-retrieval "
                "--init runs/pretrain --max-steps 2000 --lr 4e-5   |   torchrun --nproc_per_node 8 -m taomm "
                "finetune-retrieval")(finetune_retrieval_command)
    app.command("evaluate-retrieval", epilog="Examples:  taomm evaluate-retrieval --json   |   taomm "
                "evaluate-retrieval --exhaustive   |   taomm evaluate-retrieval --zero-shot   |   torchrun "
                "--nproc_per_node 8 -m taomm evaluate-retrieval --json")(evaluate_retrieval_command)
