"""The paper's pretraining ablations (Tables 4-5) on a prepared workspace (the demo catalog).

Pretrains the same model from the same seed four times: InterBERT as specified (MSM word
spans, MRM with IoU groups, 20% hard negatives), then with plain token MLM
(--mask-mode token), plain masked-object modeling (--region-mask single), and random
negatives only (--hard-negatives 0). Each is evaluated on the test split with the same
masking: held-out MSM / MRM / ITM accuracy, zero-shot text -> image R@1/5/10 by exhaustive
ITM over the first N test items (each caption's own image is the relevant one; random
ranking gives R@K = K/N), and -- as the paper's tables do -- R@1/5/10 after the same short
retrieval finetuning of each pretrained model ("ft", exhaustive ITM).

Needs a workspace where `taomm prepare`, `taomm mine-negatives` and `taomm build-vocab`
have run (e.g. `taomm init demo --demo` then those commands).

    python benchmarks/pretrain_ablation.py --workspace demo [--steps 1500] [--preset mini] [--finetune-steps 300]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from taomm.datasets.pretraining import MaskingOptions
from taomm.datasets.sharded import open_store
from taomm.model import InterBertConfig, InterBertForPretraining, InterBertForRetrieval
from taomm.retrieval import encode_items, evaluate, exhaustive_scores, recall_at_k
from taomm.text.tokenizer import TitleTokenizer
from taomm.train import TrainConfig
from taomm.train.finetune import finetune_retrieval
from taomm.train.pretrain import evaluate_pretraining, pretrain, resolve_vocab
from taomm.workspace import load_workspace

VARIANTS = {
    "InterBERT (MSM + MRM + ITM-hn)": {},
    "token MLM instead of MSM": {"mask_mode": "token"},
    "single-region MOM instead of MRM": {"region_mask": "single"},
    "random negatives only (no -hn)": {"hard_negative_p": 0.0},
}


def finetuned_recall(args: argparse.Namespace, store_path: Path, model_dir: Path, run: Path, tokenizer: TitleTokenizer,
                     eval_items: np.ndarray) -> dict[str, float]:
    """R@1/5/10 (exhaustive ITM) after the same short retrieval finetuning."""
    tune = TrainConfig(max_steps=args.finetune_steps, batch_size=32, lr=args.finetune_lr,
                       log_every=args.finetune_steps, save_every=10**9, workers=args.workers)
    _, tuned_dir = finetune_retrieval(store_path, model_dir, run, train=tune)
    tuned = InterBertForRetrieval.from_pretrained(tuned_dir)
    with open_store(store_path) as store:
        finetuned = evaluate(tuned, store, tokenizer, eval_items, "exhaustive")
    return {f"ft {k}": finetuned[k] for k in ("R@1", "R@5", "R@10")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--finetune-steps", type=int, default=300, help="Retrieval finetuning after each "
                        "pretraining (0: zero-shot only)")
    parser.add_argument("--finetune-lr", type=float, default=1e-3)
    parser.add_argument("--itc", type=float, default=1.0, help="Image-text contrastive weight in every variant "
                        "(0: the paper's three tasks; from scratch they stall, see the README)")
    parser.add_argument("--eval-items", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="Keep the runs in this folder (default: a temporary one).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ws = load_workspace(args.workspace)
    store_path = ws.path("store")
    rows = []
    with open_store(store_path) as store:
        tokenizer = TitleTokenizer(resolve_vocab(None, None, store.meta))
        test = np.sort(store.split("test"))
        eval_items = test[: args.eval_items]
        encoded = encode_items(store, eval_items, tokenizer)
    n = len(eval_items)
    rows.append({"variant": "random ranking", **{f"R@{k}": min(1.0, k / n) for k in (1, 5, 10)}})
    config = InterBertConfig.from_preset(args.preset, ws.config.language)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(args.keep or scratch)
        if args.finetune_steps:  # the floor: the same finetuning from random weights
            vocab_size = len(tokenizer)
            with open_store(store_path) as store:
                scratch_config = InterBertConfig.from_dict({**config.to_dict(), "vocab_size": vocab_size,
                                                            "num_region_classes": len(store.meta.classes),
                                                            "region_feature_dim": store.meta.feature_dim})
            torch.manual_seed(0)
            InterBertForPretraining(scratch_config).save_pretrained(tmp / "random-init", vocab_file=tokenizer.vocab_file)
            rows.append({"variant": "no pretraining (random init)",
                         **finetuned_recall(args, store_path, tmp / "random-init", tmp / "random-init-ft", tokenizer,
                                            eval_items)})
            print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
        for name, change in VARIANTS.items():
            masking = MaskingOptions(**change)
            train = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, lr=args.lr, log_every=args.steps,
                                save_every=10**9, workers=args.workers)
            t0 = time.perf_counter()
            _, model_dir = pretrain(store_path, Path(tmp) / name.split()[0], model_config=config, train=train,
                                    masking=masking, itc_weight=args.itc)
            seconds = time.perf_counter() - t0
            model = InterBertForPretraining.from_pretrained(model_dir)
            with open_store(store_path) as store:
                held_out = evaluate_pretraining(model, store, tokenizer, test)
            torch.manual_seed(0)
            recall = recall_at_k(exhaustive_scores(model, encoded, encoded))
            row = {"variant": name, **recall, **{k: round(v, 4) for k, v in held_out.items() if k.endswith("_acc")},
                   "train_s": round(seconds, 1)}
            if args.finetune_steps:
                row.update(finetuned_recall(args, store_path, model_dir, tmp / (name.split()[0] + "-ft"), tokenizer,
                                            eval_items))
            rows.append(row)
            print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    if args.json:
        print(json.dumps({"steps": args.steps, "preset": args.preset, "eval_items": n, "rows": rows}, indent=2,
                         ensure_ascii=False))
        return
    print(f"\n{args.preset} preset, {args.steps} steps x {args.batch_size}; zero-shot over {n} test items")
    keys = ("R@1", "R@5", "R@10", "msm_acc", "mrm_acc", "itm_acc", "ft R@1", "ft R@5", "ft R@10")
    print(f"{'variant':<36}" + "".join(f"{k:>9}" for k in keys))
    for r in rows:
        print(f"{r['variant']:<36}" + "".join(f"{r[k]:>9.3f}" if k in r else f"{'':>9}" for k in keys))


if __name__ == "__main__":
    main()
