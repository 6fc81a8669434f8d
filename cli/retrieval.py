"""``taomm finetune-retrieval`` and ``taomm evaluate-retrieval``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from taomm.cli.common import (
    JsonOpt,
    QueryLogOpt,
    StoreOpt,
    WorkspaceOpt,
    log_to_stderr,
    print_json,
    progress_bar,
    query_log_path,
    run_paths,
    stderr_console,
    training_progress,
)
from taomm.cli.train import PRETRAIN_DIR, recipe_lines, run_summary
from taomm.errors import TaommError
from taomm.workspace import find_workspace

RETRIEVAL_DIR = "retrieval"


def _store_and_runs(store: Path | None, workspace: Path | None) -> tuple[Path, Path | None]:
    ws = find_workspace(workspace)
    if store is None:
        if ws is None:
            raise TaommError("no --store and no workspace: pass --store STORE")
        store = ws.path("store")
    if not store.exists():
        raise TaommError(f"no feature store at {store}: run `taomm prepare` first")
    return store, ws.path("runs") if ws else None


def finetune_retrieval_command(
    init: Annotated[Path | None, typer.Option("--init", help="Pretraining run or model folder. Default: the "
                                              "workspace's runs/pretrain.")] = None,
    store: StoreOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder. Default: the workspace's runs/retrieval.",
                                             file_okay=False)] = None,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Optimizer steps.")] = 1000,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Captions per step over all processes "
                                            "(each with 1 + --negatives images).")] = 32,
    accum_steps: Annotated[int, typer.Option("--accum-steps", min=1)] = 1,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak AdamW learning rate. Default: 1e-3 for a model from "
                                             "scratch, the paper's 4e-5 for one pretrained from a BERT (--init-from).",
                                             show_default=False)] = None,
    warmup_steps: Annotated[int | None, typer.Option("--warmup-steps", min=0)] = None,
    negatives: Annotated[int | None, typer.Option("--negatives", min=1, help="Negative images per caption. Default: 1 "
                                                  "from scratch (2-way ITM: twice the steps in the same time), the "
                                                  "paper's 3 from a BERT.", show_default=False)] = None,
    hard_negatives: Annotated[float, typer.Option("--hard-negatives", min=0.0, max=1.0, help="Share of negative "
                                                  "images taken from the TF-IDF hard negatives.")] = 0.5,
    contrastive: Annotated[float, typer.Option("--contrastive", min=0.0, metavar="W", help="Weight of the contrastive "
                                               "loss of the text and image vectors (beyond the paper; 0: off).")] = 1.0,
    item_loss: Annotated[float, typer.Option("--item-loss", min=0.0, metavar="W", help="Weight of the item-vector "
                                             "loss (beyond the paper; 0: off).")] = 1.0,
    save_every: Annotated[int, typer.Option("--save-every", min=1)] = 500,
    keep_last: Annotated[int, typer.Option("--keep-last", min=1)] = 3,
    log_every: Annotated[int, typer.Option("--log-every", min=1)] = 10,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the latest checkpoint in --out.")] = False,
    split: Annotated[str | None, typer.Option("--split", help="Store split to train on (default: train).")] = None,
    query_log: QueryLogOpt = None,
    log_share: Annotated[float | None, typer.Option("--log-share", min=0.0, max=1.0, help="Share of the examples of "
                                                    "a logged item whose query comes from the log (0: ignore the log). "
                                                    "Default: 0.8 from scratch, 0.5 from a BERT.",
                                                    show_default=False)] = None,
    workers: Annotated[int, typer.Option("--workers", min=0)] = 2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    bf16: Annotated[bool, typer.Option("--bf16/--fp32")] = True,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda. Default: cuda when available.")] = "",
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

    The defaults of --lr, --negatives and --log-share follow where the pretrained model
    started (its run.json's init_from): the paper's from a BERT, the demo's measured recipe
    (lr 1e-3, 2-way ITM, log share 0.8) from scratch.
    """
    from taomm.train import TrainConfig
    from taomm.train.distributed import setup, teardown
    from taomm.train.finetune import finetune_retrieval
    from taomm.train.recipe import initialised_from, resolve_finetune

    store, _ = _store_and_runs(store, workspace)
    init, out = run_paths(workspace, init, out, PRETRAIN_DIR, RETRIEVAL_DIR)
    bert = initialised_from(init)
    recipe, warning = resolve_finetune(bert is None, lr=lr, negatives=negatives, log_share=log_share)
    query_log = query_log_path(query_log, workspace) if recipe.log_share > 0 else None
    train = TrainConfig(max_steps=max_steps, batch_size=batch_size, accum_steps=accum_steps, lr=recipe.lr,
                        warmup_steps=warmup_steps, save_every=save_every, keep_last=keep_last, log_every=log_every,
                        seed=seed, workers=workers, bf16=bf16)
    info = setup(device or None)
    start = f"pretrained from {bert} (the paper's)" if bert else f"from scratch ({init} records no --init-from)"
    header = recipe_lines(start, recipe.describe(), warning) if info.is_main else ()
    try:
        with log_to_stderr(logging.INFO if info.is_main else logging.WARNING), \
                training_progress("finetuning", max_steps, info.is_main and not json_out, header) as on_step:
            result, model_dir = finetune_retrieval(store, init, out, train=train, negatives=recipe.negatives,
                                                   hard_p=hard_negatives, split=split, query_log=query_log,
                                                   log_p=recipe.log_share, resume=resume, info=info,
                                                   on_step=on_step, contrastive=contrastive, item_loss=item_loss)
    finally:
        teardown()
    if not info.is_main:
        return
    summary = run_summary(out, model_dir, result, info.world_size)
    if json_out:
        print_json(summary)
    elif result.stopped:
        stderr_console().print(f"stopped at step {result.step}; continue with --resume")
    else:
        stderr_console().print(f"finetuned to step {result.step} in {summary['seconds']} s; model saved to "
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
    bf16: Annotated[bool, typer.Option("--bf16/--fp32")] = True,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda. Default: cuda when available.")] = "",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Text -> image recall R@1/5/10 (and image -> text) on a split: each item's title is a
    query and its own image the answer.

    --exhaustive scores every pair with ITM; --rerank K recalls K images per caption with
    the contrastive vectors and reranks them with ITM (far fewer pairs); --zero-shot
    evaluates the pretrained model.
    """
    import numpy as np
    import torch

    from taomm.datasets.sharded import open_store
    from taomm.model import InterBertForPretraining, InterBertForRetrieval
    from taomm.model.pretrained import VOCAB_NAME
    from taomm.retrieval import caption_images, evaluate
    from taomm.text.tokenizer import TitleTokenizer
    from taomm.train.finetune import resolve_model_dir

    if exhaustive and rerank is not None:
        raise TaommError("choose one of --exhaustive and --rerank K")
    store, runs = _store_and_runs(store, workspace)
    if model is None:
        if runs is None:
            raise TaommError("no --model and no workspace: pass --model DIR")
        model = runs / (PRETRAIN_DIR if zero_shot else RETRIEVAL_DIR)
    folder = resolve_model_dir(model)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    with log_to_stderr(logging.ERROR):  # a pretraining checkpoint lacks the retrieval heads: expected
        net = (InterBertForPretraining if zero_shot else InterBertForRetrieval).from_pretrained(folder)
    if zero_shot and rerank is not None:
        raise TaommError("--zero-shot evaluates a pretrained model, which has no contrastive vectors: "
                         "use --exhaustive (the default with --zero-shot)")
    if not zero_shot and net.load_report.missing:
        raise TaommError(f"{folder} lacks the retrieval heads ({net.load_report.missing[0]} ...): finetune it "
                         "with `taomm finetune-retrieval`, or evaluate it with --zero-shot")
    net.to(device)
    mode = "exhaustive" if (zero_shot or exhaustive) else "rerank"
    k = rerank or 16
    tokenizer = TitleTokenizer(folder / VOCAB_NAME)
    with open_store(store) as fs:
        ordinals = np.sort(fs.split(split))[:items]
        n = len(ordinals)
        m = len(caption_images([fs[int(o)].item_id for o in ordinals])[0])  # images: captions may share one
        total = n * m if mode == "exhaustive" else n * min(k, m) + m * min(k, n)
        with progress_bar(f"scoring ({mode})", total) as advance:
            main = evaluate(net, fs, tokenizer, ordinals, mode, k=k, batch_size=batch_size, bf16=bf16,
                            on_progress=advance)
        result = {**main, "model": str(folder.resolve()), "split": split, "zero_shot": zero_shot}
        if baselines:
            result["baselines"] = {"random": {k2: v for k2, v in evaluate(net, fs, tokenizer, ordinals, "random")
                                              .items() if k2.startswith("R@")}}
            if not zero_shot:
                contrastive = evaluate(net, fs, tokenizer, ordinals, "contrastive", batch_size=batch_size, bf16=bf16)
                result["baselines"]["contrastive"] = {k2: v for k2, v in contrastive.items() if k2.startswith("R@")}
    if json_out:
        print_json(result)
        return
    rows = [(f"{'zero-shot ' if zero_shot else ''}{mode}{f' K={k}' if mode == 'rerank' else ''}", main)]
    rows += [(name, r) for name, r in result.get("baselines", {}).items()]
    console = stderr_console()
    console.print(f"text -> image recall on {n} {split} items ({result['pairs_scored']} pairs scored in "
                  f"{result['seconds']} s)")
    typer.echo(f"{'':<26}{'R@1':>8}{'R@5':>8}{'R@10':>8}")
    for name, r in rows:
        typer.echo(f"{name:<26}{r['R@1']:>8.3f}{r['R@5']:>8.3f}{r['R@10']:>8.3f}")


def register(app: typer.Typer) -> None:
    app.command("finetune-retrieval", epilog="Examples:  taomm finetune-retrieval   |   taomm finetune-retrieval "
                "--init runs/pretrain --max-steps 2000 --lr 4e-5   |   torchrun --nproc_per_node 8 -m taomm "
                "finetune-retrieval")(finetune_retrieval_command)
    app.command("evaluate-retrieval", epilog="Examples:  taomm evaluate-retrieval --json   |   taomm "
                "evaluate-retrieval --exhaustive   |   taomm evaluate-retrieval --zero-shot")(evaluate_retrieval_command)
