"""Does pretraining pay? Pretrained against random init at equal finetuning, on cold-start items.

The paper's setting at CPU scale: a pretraining corpus much larger than the labelled
finetuning set. A demo catalog of --items listings (titles + photos) is generated; the
detector is trained on its train split's annotated photos, then the splits are redrawn:

- ``train``: --labelled items with search-log entries (the finetuning set; the log keeps
  only their (query, item) pairs);
- ``val``: every other listing of the train and val splits, unlabelled (no log entry;
  a manifest's splits are train, val and test, so the unlabelled pool is ``val``);
- ``test``: the catalog's test split, the cold-start items: never in the log, never in
  pretraining, never in finetuning.

Pretraining reads ``train+val``; finetuning reads ``train`` with the log. Every row
then gets the same finetuning (--finetune-steps of the from-scratch recipe) and is scored on
the cold-start items: text -> image R@1/5/10 (ITM rerank of the contrastive top 16,
``evaluate-retrieval``'s default), the zero-shot R@K of the pretrained model by exhaustive
ITM over the first --zero-shot-items test items (the paper's zero-shot; random ranking
gives K/N), and precision@5 of the catalog's held-out queries over the cold-start items
(photo + title item vectors, exact search; a query counts with at least 5 relevant
cold-start items). Rows:

- random init (no pretraining);
- the paper's tasks (MSM + MRM + ITM with TF-IDF hard negatives), no contrastive task;
- the paper's tasks + the contrastive task (``taomm pretrain``'s default from scratch);
- each ablation of the default: token MLM, single-region MOM, no hard negatives.

The first three rows run --seeds seeds (pretraining and finetuning seed; the catalog and
detector stay fixed) and print mean +- sample standard deviation; the ablations run one
seed unless --ablation-seeds says more. Stages run as ``taomm`` commands in --workdir; a
rerun with the same --workdir reuses what finished (delete a run folder to redo it).
About 1.5-2 hours at the defaults on 2 CPU cores; ``--quick`` checks the plumbing in
minutes (its figures mean nothing).

    python benchmarks/pretrain_value.py --workdir pv [--items 6000] [--labelled 400] [--seeds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stage_commands import run_taomm  # noqa: E402

HEADLINE = {
    "random init": None,
    "paper tasks (MSM + MRM + ITM-hn)": ["--itc", "0"],
    "paper tasks + ITC (default from scratch)": ["--itc", "1"],
}
ABLATIONS = {
    "default, token MLM instead of MSM": ["--itc", "1", "--mask-mode", "token"],
    "default, single-region MOM instead of MRM": ["--itc", "1", "--region-mask", "single"],
    "default, no hard negatives": ["--itc", "1", "--hard-negatives", "0"],
}
METRICS = ("R@1", "R@5", "R@10", "P@5", "zero-shot R@10")


def taomm(args: list[str], cwd: Path) -> str:
    """Run ``taomm ARGS`` in ``cwd`` (stderr passed through); returns stdout."""
    return run_taomm(args, cwd)[1]


def redraw_splits(catalog: Path, labelled: int, seed: int) -> dict[str, int]:
    """Rewrite the catalog's manifest splits and search log as the module docstring says."""
    manifest, log = catalog / "items.jsonl", catalog / "search_log.jsonl"
    items = [json.loads(line) for line in manifest.read_text("utf-8").splitlines()]
    pairs = [json.loads(line) for line in log.read_text("utf-8").splitlines()]
    logged = sorted({p["item_id"] for p in pairs})
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(logged, size=min(labelled, len(logged)), replace=False).tolist())
    for item in items:
        if item["split"] != "test":
            item["split"] = "train" if item["item_id"] in chosen else "val"
    manifest.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), "utf-8")
    kept = [p for p in pairs if p["item_id"] in chosen]
    log.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in kept), "utf-8")
    counts = {s: sum(i["split"] == s for i in items) for s in ("train", "val", "test")}
    return {**counts, "log_pairs": len(kept)}


def prepare_workspace(args: argparse.Namespace) -> dict[str, Any]:
    """The workspace (catalog, detector, redrawn splits, store, negatives, vocabulary), once."""
    work, done = args.workdir, args.workdir / "prepared.json"
    if done.exists():
        return json.loads(done.read_text("utf-8"))
    if (work / "taomm.toml").exists():
        raise SystemExit(f"{work} holds an unfinished workspace: remove it and run again")
    work.parent.mkdir(parents=True, exist_ok=True)
    taomm(["init", str(work), "--demo", "--items", str(args.items), "--seed", str(args.catalog_seed),
           "--preset", args.preset], work.parent)
    if args.detector is not None:  # a detector trained elsewhere (another catalog seed: no photo seen)
        shutil.copytree(args.detector, work / "runs" / "detector")
    else:
        detector = ["--max-steps", str(args.detector_steps)]
        if args.quick:
            detector += ["--image-size", "96"]
        taomm(["train-detector", *detector], work)
    splits = redraw_splits(work / "catalog", args.labelled, args.catalog_seed)
    for stage in (["prepare"], ["mine-negatives"], ["build-vocab"]):
        taomm(stage, work)
    summary = {"items": args.items, "splits": splits}
    done.write_text(json.dumps(summary), "utf-8")
    return summary


def random_init(work: Path, out: Path, preset: str, seed: int) -> Path:
    """A model folder of the random weights a pretraining run with ``seed`` starts from."""
    from taomm.model import InterBertConfig
    from taomm.train.pretrain import save_initial_weights

    if not (out / "config.json").exists():
        save_initial_weights(work / "store", out, model_config=InterBertConfig.from_preset(preset), seed=seed)
    return out


def pretrained(args: argparse.Namespace, flags: list[str] | None, seed: int, name: str) -> Path:
    """The init folder of a row: random weights, or a pretraining run over train+val."""
    work = args.workdir
    if flags is None:
        return random_init(work, work / "runs" / f"random-{seed}", args.preset, seed)
    run = work / "runs" / f"pretrain-{name}-{seed}"
    if not (run / "model" / "config.json").exists():
        taomm(["pretrain", "--config", args.preset, "--max-steps", str(args.pretrain_steps), "--split",
               "train+val", "--seed", str(seed), "--out", str(run), *flags], work)
    return run


def cold_start_precision(work: Path, model: Path, index: Path) -> float | None:
    """Precision@5 of the held-out queries over the cold-start items (photo + title vectors)."""
    from taomm.demo import precision_by_kind
    from taomm.search import SearchEngine

    if not (index / "current").exists():
        taomm(["export-embeddings", "--model", str(model), "--index", str(index)], work)
    catalog = work / "catalog"
    items = [json.loads(line) for line in (catalog / "items.jsonl").read_text("utf-8").splitlines()]
    cold = {i["item_id"]: i["attributes"] for i in items if i["split"] == "test"}
    queries = [json.loads(line) for line in (catalog / "queries.jsonl").read_text("utf-8").splitlines()]
    engine = SearchEngine(str(index), device="cpu")
    found = precision_by_kind(engine, queries, cold, k=5)["photo + title"]["all"]
    return found["precision@5"]


def run_row(args: argparse.Namespace, name: str, flags: list[str] | None, seed: int) -> dict[str, Any]:
    """Pretrain (or not), finetune, evaluate one row at one seed; cached in its run folder."""
    work = args.workdir
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    result_file = work / "results" / f"{slug}-{seed}.json"
    if result_file.exists():
        return json.loads(result_file.read_text("utf-8"))
    start = time.perf_counter()
    init = pretrained(args, flags, seed, slug)
    row: dict[str, Any] = {"row": name, "seed": seed}
    if flags is not None:
        zero = json.loads(taomm(["evaluate-retrieval", "--model", str(init), "--zero-shot", "--exhaustive",
                                 "--items", str(args.zero_shot_items), "--no-baselines", "--json"], work))
        row["zero-shot R@10"] = zero["R@10"]
    tuned = work / "runs" / f"finetune-{slug}-{seed}"
    if not (tuned / "model" / "config.json").exists():
        taomm(["finetune-retrieval", "--init", str(init), "--max-steps", str(args.finetune_steps), "--seed",
               str(seed), "--out", str(tuned)], work)
    found = json.loads(taomm(["evaluate-retrieval", "--model", str(tuned), "--no-baselines", "--json"], work))
    row.update({k: found[k] for k in ("R@1", "R@5", "R@10")})
    row["P@5"] = cold_start_precision(work, tuned / "model", work / "indexes" / f"{slug}-{seed}")
    row["seconds"] = round(time.perf_counter() - start, 1)
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(row), "utf-8")
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per row name: mean and sample standard deviation of each metric over its seeds."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["row"] for r in rows):
        runs = [r for r in rows if r["row"] == name]
        out[name] = {"seeds": len(runs)}
        for metric in METRICS:
            values = [r[metric] for r in runs if r.get(metric) is not None]
            if values:
                spread = statistics.stdev(values) if len(values) > 1 else None
                out[name][metric] = {"mean": round(statistics.fmean(values), 3),
                                     "std": round(spread, 3) if spread is not None else None}
    return out


def print_table(summary: dict[str, dict[str, Any]], prepared: dict[str, Any]) -> None:
    splits = prepared["splits"]
    print(f"cold-start items: {splits['test']} (test split); pretraining corpus: {splits['train']} labelled + "
          f"{splits['val']} unlabelled listings; finetuning: {splits['train']} items, "
          f"{splits['log_pairs']} logged (query, item) pairs")
    print(f"{'row':46s} {'seeds':>5s} " + " ".join(f"{m:>15s}" for m in METRICS))
    for name, row in summary.items():
        cells = []
        for metric in METRICS:
            cell = row.get(metric)
            if cell is None:
                cells.append(f"{'-':>15s}")
            else:
                spread = f" +-{cell['std']:.3f}" if cell["std"] is not None else ""
                cells.append(f"{cell['mean']:.3f}{spread}".rjust(15))
        print(f"{name:46s} {row['seeds']:>5d} " + " ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="Work folder (reused by a rerun)")
    parser.add_argument("--items", type=int, default=6000, help="Listings in the generated catalog")
    parser.add_argument("--labelled", type=int, default=400, help="Items that keep their search-log entries")
    parser.add_argument("--catalog-seed", type=int, default=0)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--detector-steps", type=int, default=250)
    parser.add_argument("--detector", type=Path, help="Use this detector folder instead of training one (trained "
                        "on another --catalog-seed, so it has seen none of these photos)")
    parser.add_argument("--pretrain-steps", type=int, default=600)
    parser.add_argument("--finetune-steps", type=int, default=400)
    parser.add_argument("--zero-shot-items", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3, help="Seeds of the first three rows")
    parser.add_argument("--ablation-seeds", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="Tiny sizes: checks the plumbing, not the claim")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.items, args.labelled, args.detector_steps = 300, 60, 10
        args.pretrain_steps, args.finetune_steps, args.zero_shot_items, args.seeds = 10, 10, 20, 2
    start = time.perf_counter()
    prepared = prepare_workspace(args)
    rows = [run_row(args, name, flags, seed) for name, flags in HEADLINE.items() for seed in range(args.seeds)]
    rows += [run_row(args, name, flags, seed) for name, flags in ABLATIONS.items()
             for seed in range(args.ablation_seeds)]
    summary = summarise(rows)
    if args.json:
        print(json.dumps({"prepared": prepared, "summary": summary, "runs": rows,
                          "seconds": round(time.perf_counter() - start, 1)}, ensure_ascii=False, indent=2))
    else:
        print_table(summary, prepared)


if __name__ == "__main__":
    main()
