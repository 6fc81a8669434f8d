"""The paper's pretraining ablations (Tables 4-5) on a prepared workspace (the demo catalog).

Pretrains the same model from the same seed four times: InterBERT as specified (MSM word
spans, MRM with IoU groups, 20% hard negatives), then with plain token MLM
(--mask-mode token), plain masked-object modeling (--region-mask single), and random
negatives only (--hard-negatives 0). Each is evaluated on the test split with the same
masking: held-out MSM / MRM / ITM accuracy, and zero-shot text -> image R@1/5/10 by
exhaustive ITM over the first N test items (each caption's own image is the relevant one;
random ranking gives R@K = K/N).

Needs a workspace where `taomm prepare`, `taomm mine-negatives` and `taomm build-vocab`
have run (e.g. `taomm init demo --demo` then those commands).

    python benchmarks/pretrain_ablation.py --workspace demo [--steps 300] [--preset small]
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
from taomm.model import InterBertConfig, InterBertForPretraining
from taomm.retrieval import encode_items, exhaustive_scores, recall_at_k
from taomm.text.tokenizer import TitleTokenizer
from taomm.train import TrainConfig
from taomm.train.pretrain import evaluate_pretraining, pretrain, resolve_vocab
from taomm.workspace import load_workspace

VARIANTS = {
    "InterBERT (MSM + MRM + ITM-hn)": {},
    "token MLM instead of MSM": {"mask_mode": "token"},
    "single-region MOM instead of MRM": {"region_mask": "single"},
    "random negatives only (no -hn)": {"hard_negative_p": 0.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--eval-items", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
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
    with tempfile.TemporaryDirectory() as tmp:
        for name, change in VARIANTS.items():
            masking = MaskingOptions(**change)
            train = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, lr=args.lr, log_every=args.steps,
                                save_every=10**9, workers=args.workers)
            t0 = time.perf_counter()
            _, model_dir = pretrain(store_path, Path(tmp) / name.split()[0], model_config=config, train=train,
                                    masking=masking)
            seconds = time.perf_counter() - t0
            model = InterBertForPretraining.from_pretrained(model_dir)
            with open_store(store_path) as store:
                held_out = evaluate_pretraining(model, store, tokenizer, test)
            torch.manual_seed(0)
            recall = recall_at_k(exhaustive_scores(model, encoded, encoded))
            rows.append({"variant": name, **recall, **{k: round(v, 4) for k, v in held_out.items()
                                                       if k.endswith("_acc")}, "train_s": round(seconds, 1)})
            print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    if args.json:
        print(json.dumps({"steps": args.steps, "preset": args.preset, "eval_items": n, "rows": rows}, indent=2,
                         ensure_ascii=False))
        return
    print(f"\n{args.preset} preset, {args.steps} steps x {args.batch_size}; zero-shot over {n} test items")
    print(f"{'variant':<36}{'R@1':>7}{'R@5':>7}{'R@10':>7}{'MSM acc':>9}{'MRM acc':>9}{'ITM acc':>9}")
    for r in rows:
        accs = "".join(f"{r[k]:>9.3f}" if k in r else f"{'':>9}" for k in ("msm_acc", "mrm_acc", "itm_acc"))
        print(f"{r['variant']:<36}{r['R@1']:>7.3f}{r['R@5']:>7.3f}{r['R@10']:>7.3f}{accs}")


if __name__ == "__main__":
    main()
