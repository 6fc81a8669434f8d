"""Pretraining throughput on CPU: the whole trainer (store -> examples -> DataLoader ->
forward/backward/AdamW -> metrics) against a bare training step on one pre-built batch.

For the tiny and small presets, fp32 and bf16 autocast: samples/s of `taomm.train.pretrain`
(the second half of the run, after warm-up), samples/s of the bare step (same model, same
batch size, the batch collated once), their ratio (the cost of the data pipeline and the
trainer's bookkeeping), and achieved GFLOP/s against this machine's matmul peak measured
in the same run. The store is synthetic with the real shapes: 16 regions x 2048-d fp16
features, titles of 4-12 words, mined hard negatives.

    python benchmarks/pretrain.py [--presets tiny,small] [--steps 30] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from taomm.datasets.pretraining import MaskingOptions, PretrainingData
from taomm.datasets.store import FeatureStore, Item, StoreWriter, word_ends_of
from taomm.model import InterBertConfig, InterBertForPretraining
from taomm.taxonomy import load_taxonomy
from taomm.text.mining import mine_hard_negatives
from taomm.text.tokenizer import TitleTokenizer, train_vocab
from taomm.train import TrainConfig
from taomm.train.flops import matmul_peak
from taomm.train.pretrain import PretrainTask, pretrain
from taomm.train.trainer import param_groups

WORDS = ["红色", "蓝色", "白色", "黑色", "波点", "条纹", "格子", "碎花", "纯色", "荷叶边", "百褶", "半身裙", "连衣裙",
         "衬衫", "卫衣", "帆布鞋", "双肩包", "女装", "男款", "新款", "包邮", "夏季", "韩版", "宽松", "修身", "高腰"]
BATCH = {"tiny": 64, "small": 32, "base": 8}


def build_store(path: Path, count: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    taxonomy = load_taxonomy("taobao33")
    items = []
    for i in range(count):
        words = [WORDS[j] for j in rng.choice(len(WORDS), int(rng.integers(4, 13)), replace=True)]
        x1, y1 = rng.uniform(0, 300, 16), rng.uniform(0, 300, 16)
        boxes = np.stack([x1, y1, x1 + rng.uniform(20, 200, 16), y1 + rng.uniform(20, 200, 16)], 1)
        items.append(Item(f"b{i:06d}", "".join(words), word_ends_of(words), 500, 500, boxes,
                          rng.random((16, 2048), dtype=np.float32).astype(np.float16), rng.integers(0, 33, 16),
                          rng.uniform(0.1, 1, 16)))
    vocab = train_vocab([it.title for it in items], path / "vocab.txt", vocab_size=2000, min_frequency=1)
    negatives, _ = mine_hard_negatives([it.words for it in items], top_k=30)
    with StoreWriter(path, language="zh", feature_dim=2048, taxonomy=taxonomy.name, classes=taxonomy.classes) as w:
        for it in items:
            w.add(it)
        w.flush()
        w.set_negatives((i, row[row >= 0]) for i, row in enumerate(negatives))
        w.set_tokenizer({**TitleTokenizer(vocab).info(), "vocab_file": str(vocab.resolve())})
    return path


def bare_step_rate(store: Path, config: InterBertConfig, batch_size: int, bf16: bool, steps: int) -> tuple[float, float]:
    """Samples/s of forward + backward + AdamW on one collated batch; and its FLOPs per sample."""
    with FeatureStore(store) as fs:
        tok = TitleTokenizer(store / "vocab.txt")
        data = PretrainingData(fs, tok, np.arange(len(fs)), options=MaskingOptions())
        task = PretrainTask(data, config)
        batch = task.collate([data[p] for p in range(batch_size)])
    torch.manual_seed(0)
    model = InterBertForPretraining(config).train()
    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-4)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = task.loss_sums(model, batch, 0).float().sum() / batch_size
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    step = float(np.median(times[steps // 2:]))
    return batch_size / step, task.flops(batch) / batch_size


def trainer_rate(store: Path, run: Path, config: InterBertConfig, batch_size: int, bf16: bool, steps: int,
                 workers: int) -> float:
    train = TrainConfig(max_steps=steps, batch_size=batch_size, log_every=steps // 2, save_every=10**9,
                        workers=workers, bf16=bf16, warmup_steps=1)
    pretrain(store, run, model_config=config, train=train)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return rows[-1]["samples_per_s"]  # the second half: DataLoader start-up and warm-up excluded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="tiny,small")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(Path(tmp) / "store", args.items)
        vocab_size = len(TitleTokenizer(store / "vocab.txt"))
        for preset in args.presets.split(","):
            config = InterBertConfig.from_preset(preset, "zh", vocab_size=vocab_size)
            b = BATCH[preset]
            for precision in ("fp32", "bf16"):
                bf16 = precision == "bf16"
                bare, flops_per_sample = bare_step_rate(store, config, b, bf16, max(6, args.steps // 3))
                full = trainer_rate(store, Path(tmp) / f"run-{preset}-{precision}", config, b, bf16, args.steps,
                                    args.workers)
                gflops = full * flops_per_sample / 1e9
                rows.append({"preset": preset, "precision": precision, "batch": b,
                             "trainer_samples_per_s": round(full, 1), "bare_step_samples_per_s": round(bare, 1),
                             "trainer_vs_bare": round(full / bare, 3), "gflop_per_sample": round(flops_per_sample / 1e9, 3),
                             "gflops": round(gflops, 1), "fraction_of_peak": round(gflops / peak[precision], 3)})
    result = {"peak_gflops": {k: round(v, 1) for k, v in peak.items()}, "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'preset':<7}{'prec':<6}{'batch':>6}{'trainer/s':>11}{'bare/s':>9}{'ratio':>8}{'GFLOP/s':>10}{'of peak':>9}")
    for r in rows:
        print(f"{r['preset']:<7}{r['precision']:<6}{r['batch']:>6}{r['trainer_samples_per_s']:>11.1f}"
              f"{r['bare_step_samples_per_s']:>9.1f}{r['trainer_vs_bare']:>8.2f}{r['gflops']:>10.1f}"
              f"{100 * r['fraction_of_peak']:>8.1f}%")


if __name__ == "__main__":
    main()
