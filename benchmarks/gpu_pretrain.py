"""Pretraining speed on one GPU: samples/s and MFU of the base preset with bf16 autocast.

Runs as is on a CUDA machine with taomm installed (no data, no network): builds a synthetic
store with the real shapes (16 regions x 2048-d features, 30-token titles, a 21,128-token
vocabulary), then
  1. the bare step: forward + backward + AdamW on one batch already on the GPU, and
  2. the whole trainer (`taomm.train.pretrain`: store -> DataLoader workers -> step),
and prints samples/s and MFU (achieved matmul FLOP/s over the GPU's dense bf16 peak) for
both. Goal: >= 40% MFU with bf16. Exits with a message when no GPU is present.

    python benchmarks/gpu_pretrain.py [--batch 128] [--steps 60] [--items 8192] [--workers 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from taomm.datasets.pretraining import MaskingOptions, PretrainingData
from taomm.datasets.store import FeatureStore, Item, StoreWriter, word_ends_of
from taomm.model import InterBertConfig, InterBertForPretraining
from taomm.taxonomy import load_taxonomy
from taomm.train import TrainConfig
from taomm.train.flops import matmul_peak
from taomm.train.pretrain import PretrainTask, pretrain
from taomm.train.trainer import gpu_peak_flops, param_groups


def write_vocab(path: Path, size: int = 21128) -> Path:
    """A bert-base-chinese-sized vocabulary: the special tokens, then CJK characters."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [chr(0x4E00 + i) for i in range(size - len(tokens))]
    path.write_text("".join(t + "\n" for t in tokens), "utf-8")
    return path


def build_store(path: Path, count: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    taxonomy = load_taxonomy("taobao33")
    vocab = write_vocab(path.parent / "vocab.txt")
    from taomm.text.tokenizer import TitleTokenizer

    with StoreWriter(path, language="zh", feature_dim=2048, taxonomy=taxonomy.name, classes=taxonomy.classes) as w:
        for i in range(count):
            chars = [chr(0x4E00 + int(c)) for c in rng.integers(0, 3000, 30)]
            words = ["".join(chars[j:j + 2]) for j in range(0, 30, 2)]
            x1, y1 = rng.uniform(0, 300, 16), rng.uniform(0, 300, 16)
            boxes = np.stack([x1, y1, x1 + rng.uniform(20, 200, 16), y1 + rng.uniform(20, 200, 16)], 1)
            w.add(Item(f"g{i:07d}", "".join(words), word_ends_of(words), 500, 500, boxes,
                       rng.random((16, 2048), dtype=np.float32).astype(np.float16), rng.integers(0, 33, 16),
                       rng.uniform(0.1, 1, 16)))
        w.flush()
        w.set_tokenizer({**TitleTokenizer(vocab).info(), "vocab_file": str(vocab.resolve())})
    return path


def bare(store: Path, config: InterBertConfig, batch_size: int, steps: int, peak: float) -> dict:
    from taomm.text.tokenizer import TitleTokenizer

    with FeatureStore(store) as fs:
        data = PretrainingData(fs, TitleTokenizer(store.parent / "vocab.txt"), np.arange(len(fs)),
                               options=MaskingOptions())
        task = PretrainTask(data, config)
        batch = {k: v.cuda() for k, v in task.collate([data[p] for p in range(batch_size)]).items()}
    model = InterBertForPretraining(config).cuda().train()
    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-4, fused=True)
    for i in range(steps + 5):
        if i == 5:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = task.loss_sums(model, batch, 0).float().sum() / batch_size
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / steps
    return {"samples_per_s": round(batch_size / seconds, 1), "mfu": round(task.flops(batch) / seconds / peak, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="base")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--items", type=int, default=8192)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: this benchmark measures GPU pretraining (see benchmarks/pretrain.py for CPU)")
    device = torch.device("cuda")
    peak = gpu_peak_flops(device)
    measured = matmul_peak(torch.bfloat16, sizes=(4096, 8192), device=device) * 1e9
    if peak is None:
        peak = measured
    torch.backends.cuda.matmul.allow_tf32 = True
    result = {"gpu": torch.cuda.get_device_name(device), "peak_tflops_bf16": peak / 1e12,
              "measured_matmul_tflops_bf16": round(measured / 1e12, 1), "preset": args.preset, "batch": args.batch}
    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(Path(tmp) / "store", args.items)
        config = InterBertConfig.from_preset(args.preset, "zh")
        result["bare_step"] = bare(store, config, args.batch, args.steps, peak)
        run = Path(tmp) / "run"
        train = TrainConfig(max_steps=args.steps, batch_size=args.batch, log_every=args.steps // 2,
                            save_every=10**9, workers=args.workers, warmup_steps=1)
        pretrain(store, run, model_config=config, train=train, device="cuda")
        last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
        result["trainer"] = {"samples_per_s": last["samples_per_s"], "mfu": last.get("mfu")}
    print(json.dumps(result, indent=2))
    ok = (result["trainer"]["mfu"] or 0) >= 0.40
    print(f"trainer MFU {100 * (result['trainer']['mfu'] or 0):.1f}% (goal >= 40%: {'met' if ok else 'not met'}); "
          f"bare step MFU {100 * result['bare_step']['mfu']:.1f}%")


if __name__ == "__main__":
    main()
