"""``taomm demo``: the whole pipeline on the generated demo catalog, on CPU, resumable."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from taomm.cli.common import JsonOpt, log_to_stderr, print_json, progress_bar, stderr_console

DEFAULT_WORKDIR = Path("taomm-demo")


def demo_command(
    workdir: Annotated[Path, typer.Option("--workdir", help="Work folder (a workspace afterwards).",
                                          file_okay=False)] = DEFAULT_WORKDIR,
    items: Annotated[int | None, typer.Option("--items", min=50, help="Products in the catalog. Default: 2000 "
                                              "(--quick: 240).", show_default=False)] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A small version (about 2 minutes): few items and steps.")]
    = False,
    restart: Annotated[bool, typer.Option("--restart", help="Start again, removing what an earlier demo wrote in "
                                          "--workdir.")] = False,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda. Default: cuda when available.")] = "",
    index: Annotated[str | None, typer.Option("--index", help="Where the export stage writes the item vectors: a "
                                              "folder, milvus-lite:PATH.db (embedded Milvus, no server) or "
                                              "milvus://HOST:PORT/COLLECTION; a relative path is in --workdir. "
                                              "Recorded in the workspace's taomm.toml, so later commands there "
                                              "use it; another one on a rerun exports and searches again. "
                                              "Default: what --workdir's taomm.toml names, else the folder index.",
                                              show_default=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the whole pipeline on a fresh demo catalog: detector, prepare (bad titles
    quarantined), hard negatives, vocabulary, pretraining, retrieval finetuning, evaluation
    (R@1/5/10 against random ranking, zero-shot and the same finetuning from random weights),
    export, then searches and a recommendation.

    A rerun skips the stages that finished (training resumes from its last checkpoint).
    Afterwards the work folder is a workspace: cd into it and run any command without paths,
    e.g. taomm search "波点荷叶边裙".
    """
    from taomm.demo import STAGES, Demo, DemoConfig
    from taomm.demo import restart as clear

    config = DemoConfig.quick() if quick else DemoConfig()
    if items is not None:
        config = dataclasses.replace(config, items=items)
    if restart:
        clear(workdir)
    console = stderr_console()
    demo = Demo(workdir, config, progress_bar, device=device or None, index=index)
    start = time.perf_counter()
    with log_to_stderr(logging.WARNING):
        for number, stage in enumerate(STAGES, 1):
            done = stage not in demo.pending()
            record = demo.run(stage)
            if not json_out:
                when = "done earlier" if done else f"{record.seconds:.1f} s"
                console.print(f"[bold][{number}/{len(STAGES)}] {stage}[/bold] ({when}): {_brief(stage, record.summary)}")
    total = round(time.perf_counter() - start, 1)
    summaries = {name: dataclasses.asdict(rec) for name, rec in demo.records.items()}
    if json_out:
        print_json({"workdir": str(demo.root), "config": config.to_json(), "seconds": total, "stages": summaries})
        return
    _report(demo, total)


def _brief(stage: str, s: dict[str, Any]) -> str:
    if stage == "catalog":
        bad = sum(s["bad_titles"].values())
        return f"{s['items']} products ({bad} with bad titles on purpose), {s['queries']} held-out queries"
    if stage == "detector":
        boxes = f", any class {s['boxes_mAP@0.5']}" if "boxes_mAP@0.5" in s else ""  # demos run before it lack it
        return f"{s['steps']} steps, loss {s['final_loss']}, test mAP {s['mAP']} (mAP@0.5 {s['mAP@0.5']}{boxes})"
    if stage == "prepare":
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["reasons"].items())) or "none"
        probe = ", ".join(f"{g} {row['accuracy']:.2f} (majority {row['majority']:.2f})"
                          for g, row in s.get("probe", {}).items())
        return (f"{s['inputs']} items: {s['ok']} in the store, {s['quarantined']} quarantined ({reasons})"
                + (f"; linear probe on the stored region features: {probe}" if probe else ""))
    if stage == "negatives":
        return f"{s['mean_negatives']} hard negatives per item"
    if stage == "vocab":
        return f"{s['vocab_size']} WordPiece tokens"
    if stage == "baseline":
        return (_brief("finetune", s) + f"; from random weights: precision@5 {s['by_kind']['all']['precision@5']} "
                "(table below)")
    if stage in ("pretrain", "finetune"):
        losses = ", ".join(f"{k} {v:.3f}" for k, v in s["last"].items() if isinstance(v, float) and k != "grad_norm")
        recipe = ", ".join(f"{k} {v:g}" for k, v in s.get("recipe", {}).items() if v is not None)
        return (f"{s['steps']} steps, {s['samples_per_s']} samples/s; {losses}"
                + (f" (the from-scratch defaults: {recipe})" if recipe else ""))
    if stage == "evaluate":
        return f"R@1/5/10 on {s['items']} test items (table below)"
    if stage == "export":
        return f"{s['items']} items indexed ({s['version']} in {s.get('index', 'index')})"
    p, r = s["precision"]["search"], s["precision"]["rerank"]
    return (f"precision@5 {p['precision@5']} (taomm search), {r['precision@5']} with an ITM rerank, over "
            f"{p['queries']} held-out queries")


def _report(demo: Any, total: float) -> None:
    console = stderr_console()
    evaluation = demo.records["evaluate"].summary
    table = Table(title=f"text -> image retrieval, {evaluation['items']} test items (finetuned: the contrastive "
                        f"vectors' top {evaluation['rerank']}, reranked by ITM; zero-shot: ITM on every pair, "
                        "the paper's)")
    for column in ("model", "R@1", "R@5", "R@10"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, row in evaluation["recall"].items():
        table.add_row(name, *(f"{row[k]:.3f}" for k in ("R@1", "R@5", "R@10")))
    console.print(table)
    console.print("  zero-shot: taomm evaluate-retrieval --model runs/pretrain --zero-shot --exhaustive; the two "
                  f"finetuned rows: {demo.config.finetune_steps} steps of the same recipe and seed, from the pretrained "
                  "weights and from the random ones pretraining started from", style="dim")
    search = demo.records["search"].summary
    for query, hits in search["searches"].items():
        console.print(f"\n[bold]taomm search {query!r}[/bold]")
        for hit in hits:
            console.print(f"  {hit['rank']}. {hit['item_id']}  {hit['title']}  [dim]{hit['image']}[/dim]")
    rec = search["recommend"]
    console.print(f"\n[bold]taomm recommend {rec['item']}[/bold]")
    for hit in rec["similar"]:
        console.print(f"  {hit['rank']}. {hit['item_id']}  {hit['title']}  [dim]{hit['image']}[/dim]")
    console.print("\nprecision@5 of taomm search over the catalog's held-out queries (relevant: every indexed "
                  "item with the query's attributes):")
    rerank = demo.config.rerank
    for label, key in (("taomm search (listing vectors, the default)", "search"),
                       (f"with an ITM rerank of the top {rerank} (--rerank {rerank})", "rerank")):
        p = search["precision"][key]
        console.print(f"  {label}: [bold]{p['precision@5']}[/bold] over the {p['queries']} queries with at least 5 "
                      f"relevant items; {p['precision@5_all']} over all {p['queries_all']} (capped at their count)")
    by_kind = search.get("by_kind")
    if by_kind:
        kinds = [k for k in next(iter(by_kind.values())) if k != "all"]
        table = Table(title="what the photo and the pretraining add: precision@5 per attribute kind of the "
                            "held-out queries, by how the item vectors are built (exact search; random init: the "
                            "same finetuning from the random weights pretraining started from)")
        for column in ("item vectors", *kinds, "all"):
            table.add_column(column, justify="left" if column == "item vectors" else "right")
        for variant, row in by_kind.items():
            table.add_row(variant, *(_cell(row[k]) for k in (*kinds, "all")))
        baseline = demo.records["baseline"].summary.get("by_kind")
        if baseline:  # what pretraining adds to listing search
            table.add_row("photo + title, random init", *(_cell(baseline[k]) for k in (*kinds, "all")))
        console.print(table)
    stages = sum(rec.seconds for rec in demo.records.values())
    console.print(f"demo finished: {stages:.0f} s of stages in all ({total:.0f} s this run); images are under "
                  f"{demo.catalog / 'images'}.\n"
                  f"Next: cd {demo.root} && taomm search \"波点荷叶边裙\"   (or taomm serve)")


def _cell(row: dict[str, Any]) -> str:
    value = row.get("precision@5")
    return "-" if value is None else f"{value:.3f} ({row['queries']})"


def register(app: typer.Typer) -> None:
    app.command("demo", epilog="Examples:  taomm demo   |   taomm demo --quick --workdir /tmp/demo   |   "
                "taomm demo --items 4000 --restart   |   taomm demo --index milvus-lite:demo.db"
                )(demo_command)
