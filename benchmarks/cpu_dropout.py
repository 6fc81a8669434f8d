"""CPU dropout: taomm's ``Dropout`` (16-bit masks, four per 64-bit draw) against torch's.

Contract: in one process and on the same batch, alternating in rounds, it times
- the dropout alone, forward + backward, on a (B * T, H) bf16 activation of the demo's
  finetuning (``mini`` preset, batch 32 x 2 pairs x ~40 positions);
- attention with dropout on the probabilities, forward + backward, (64, 4, 40, 64) bf16:
  ``scaled_dot_product_attention(dropout_p=0.1)`` (its CPU path draws ``bernoulli_``)
  against taomm's training path (softmax, taomm ``Dropout``, matmul);
- a bf16 training step (zero_grad + forward + backward + AdamW) of the ``mini`` preset as
  it is, and with torch's dropout everywhere (``nn.Dropout`` modules, SDPA's attention
  dropout: the model before this change);
and prints the fastest time of each with the ratio, and the drop rate measured on 4M
elements (goal: the rate within 0.001 of p, the step faster). The table reports the fastest
round (the machine may be shared) and the load average.

    python benchmarks/cpu_dropout.py [--preset mini] [--batch 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from taomm.model import InterBertConfig, InterBertForPretraining
from taomm.model.modeling import Dropout, InterBertAttention

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_step import make_batch  # noqa: E402


def fastest(step: Callable[[], None], repeats: int) -> float:
    step()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


def sdpa_attention(self: InterBertAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """InterBertAttention.forward with SDPA's own dropout (the model before taomm's CPU path)."""
    B, T, H = x.shape
    q, k, v = (proj(x).view(B, T, self.n_head, H // self.n_head).transpose(1, 2)
               for proj in (self.query, self.key, self.value))
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0)
    return self.norm(x + self.dropout(self.out(y.transpose(1, 2).reshape(B, T, H))))


def torch_dropout(model: nn.Module) -> nn.Module:
    """``model`` with torch's dropout everywhere (in place): nn.Dropout modules, SDPA attention."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Dropout):
                setattr(module, name, nn.Dropout(child.p))
        if isinstance(module, InterBertAttention):
            module.forward = sdpa_attention.__get__(module)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--batch", type=int, default=64, help="pairs per step (the demo: 32 captions x 2 images)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--p", type=float, default=0.1)
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = InterBertConfig.from_preset(args.preset, vocab_size=2000)

    x = torch.randn(args.batch * 40, cfg.hidden_size, dtype=torch.bfloat16, requires_grad=True)
    ops = {"torch": nn.Dropout(args.p).train(), "taomm": Dropout(args.p).train()}
    heads = cfg.num_attention_heads
    qkv = [torch.randn(args.batch, heads, 40, cfg.hidden_size // heads, dtype=torch.bfloat16, requires_grad=True)
           for _ in range(3)]
    keys = torch.ones(args.batch, 1, 1, 40, dtype=torch.bool)
    keys[:, :, :, 30:] = False  # padding

    def op_step(module: nn.Module) -> Callable[[], None]:
        def step() -> None:
            x.grad = None
            module(x).sum().backward()
        return step

    def attention_step(name: str) -> Callable[[], None]:
        q, k, v = qkv

        def step() -> None:
            for t in qkv:
                t.grad = None
            if name == "torch":
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=args.p)
            else:  # as InterBertAttention trains on the CPU
                probs = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).masked_fill(~keys, float("-inf")).softmax(-1)
                y = ops[name](probs) @ v
            y.float().sum().backward()
        return step

    batch = make_batch(cfg, args.batch, torch.Generator().manual_seed(0))
    models = {}
    for name in ops:
        torch.manual_seed(0)
        model = InterBertForPretraining(cfg)
        model = (torch_dropout(model) if name == "torch" else model).train()
        models[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4))

    def train_step(name: str) -> Callable[[], None]:
        model, optimizer = models[name]

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
        return step

    op_times = {name: float("inf") for name in ops}
    attention_times = dict(op_times)
    step_times = dict(op_times)
    for _ in range(args.rounds):  # alternate, so that a busy moment hurts both
        for name, module in ops.items():
            op_times[name] = min(op_times[name], fastest(op_step(module), 20))
            attention_times[name] = min(attention_times[name], fastest(attention_step(name), 10))
            step_times[name] = min(step_times[name], fastest(train_step(name), 3))

    ones = torch.ones(4_000_000)
    rates = {name: float((module(ones) == 0).float().mean()) for name, module in ops.items()}
    print(f"preset {args.preset}, {args.batch} pairs, p {args.p}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'dropout':8} {'dropout fwd+bwd':>16} {'attention fwd+bwd':>18} {'train step':>12} {'drop rate':>10}")
    for name in ops:
        print(f"{name:8} {op_times[name] * 1e3:13.2f} ms {attention_times[name] * 1e3:15.2f} ms "
              f"{step_times[name] * 1e3:9.1f} ms {rates[name]:10.4f}")
    ratios = {what: times["torch"] / times["taomm"] for what, times in
              (("dropout", op_times), ("attention", attention_times), ("step", step_times))}
    print(f"taomm / torch: dropout {ratios['dropout']:.2f}x faster, attention {ratios['attention']:.2f}x, "
          f"training step {ratios['step']:.2f}x")
    print(json.dumps({"op_ms": {k: round(v * 1e3, 3) for k, v in op_times.items()},
                      "attention_ms": {k: round(v * 1e3, 3) for k, v in attention_times.items()},
                      "step_ms": {k: round(v * 1e3, 2) for k, v in step_times.items()},
                      "drop_rate": rates, "speedup": {k: round(v, 3) for k, v in ratios.items()}}))


if __name__ == "__main__":
    main()
