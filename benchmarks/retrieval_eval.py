"""Retrieval evaluation: exhaustive ITM over every pair vs recall-then-rerank, in one run.

On a workspace with a finetuned retrieval model (`taomm finetune-retrieval`), over the test
split: text -> image R@1/5/10 and wall time of (a) exhaustive ITM on all N x N pairs and
(b) contrastive recall of K images per caption reranked by ITM (K = 16 by default), plus the
contrastive vectors alone and random ranking; and, with --zero-shot-model, the pretrained
model's exhaustive zero-shot figures. Goals: rerank >= 5x faster than exhaustive with R@1
within 1 point.

    python benchmarks/retrieval_eval.py --workspace demo [--k 16] [--zero-shot-model demo/runs/pretrain]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from taomm.datasets.sharded import open_store
from taomm.model import InterBertForPretraining, InterBertForRetrieval
from taomm.retrieval import evaluate
from taomm.text.tokenizer import TitleTokenizer
from taomm.train.finetune import resolve_model_dir
from taomm.workspace import load_workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--model", type=Path, help="Default: WORKSPACE/runs/retrieval")
    parser.add_argument("--zero-shot-model", type=Path, help="A pretraining run, for the zero-shot row")
    parser.add_argument("--split", default="test")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ws = load_workspace(args.workspace)
    folder = resolve_model_dir(args.model or ws.path("runs") / "retrieval")
    model = InterBertForRetrieval.from_pretrained(folder)
    tokenizer = TitleTokenizer(folder / "vocab.txt")
    torch.set_num_threads(os.cpu_count() or 1)
    rows = {}
    with open_store(ws.path("store")) as store:
        ordinals = np.sort(store.split(args.split))
        rows["random"] = evaluate(model, store, tokenizer, ordinals, "random")
        if args.zero_shot_model:
            zero_dir = resolve_model_dir(args.zero_shot_model)
            zero = InterBertForPretraining.from_pretrained(zero_dir)
            rows["zero-shot pretrained (exhaustive)"] = evaluate(zero, store, tokenizer, ordinals, "exhaustive")
        rows["contrastive vectors only"] = evaluate(model, store, tokenizer, ordinals, "contrastive")
        # warm both paths once, then time them back to back
        evaluate(model, store, tokenizer, ordinals[:32], "exhaustive")
        rows["finetuned, exhaustive ITM"] = evaluate(model, store, tokenizer, ordinals, "exhaustive")
        rows[f"finetuned, rerank K={args.k}"] = evaluate(model, store, tokenizer, ordinals, "rerank", k=args.k)
    exhaustive, rerank = rows["finetuned, exhaustive ITM"], rows[f"finetuned, rerank K={args.k}"]
    summary = {"items": len(ordinals), "speedup": round(exhaustive["seconds"] / rerank["seconds"], 2),
               "pair_ratio": round(exhaustive["pairs_scored"] / max(1, rerank["pairs_scored"]), 2),
               "r1_gap_points": round(100 * (exhaustive["R@1"] - rerank["R@1"]), 2),
               "load_average": os.getloadavg()}
    if args.json:
        print(json.dumps({"rows": rows, **summary}, indent=2))
        return
    print(f"text -> image on {len(ordinals)} {args.split} items of {args.workspace}")
    print(f"{'':<36}{'R@1':>7}{'R@5':>7}{'R@10':>7}{'pairs':>9}{'seconds':>9}")
    for name, r in rows.items():
        print(f"{name:<36}{r['R@1']:>7.3f}{r['R@5']:>7.3f}{r['R@10']:>7.3f}{r['pairs_scored']:>9}{r['seconds']:>9.2f}")
    print(f"rerank vs exhaustive: {summary['speedup']}x faster, {summary['pair_ratio']}x fewer pairs, "
          f"R@1 gap {summary['r1_gap_points']} points (goals: >= 5x, <= 1 point)")


if __name__ == "__main__":
    main()
