"""Model training-step speed on CPU: taomm InterBERT vs a stack of transformers' BertLayers.

Contract: forward + backward samples/s of the ``tiny``/``small``/``base`` presets at 16
regions + 36 tokens, fp32 and bf16 autocast (weights stay fp32); the same step for an
equivalent stack built from ``transformers.models.bert.modeling_bert.BertLayer`` (same
sizes, SDPA attention, train mode, same dropout); achieved GFLOP/s against this
machine's matmul peak measured in the same run. Goals: bf16 >= 2.5x fp32; taomm not
slower than the transformers-built stack; report the fraction of the matmul peak.

A step is zero_grad + forward + loss.backward(), no optimizer. Both sides run in this
one process on the same batch, alternating in rounds. The table reports the fastest step
of each variant (the machine may be shared; the JSON has the medians too) and the load
average, so a busy machine shows.

    python benchmarks/model_step.py [--presets tiny,small,base] [--quick] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertLayer

from taomm.model import InterBertConfig, InterBertForPretraining
from taomm.train.flops import matmul_peak, pretraining_step_flops

REGIONS, TOKENS = 16, 36  # 16 regions + image [CLS] = 17 image positions; 17 + 36 = 53
MASK_RATE = 0.15  # share of tokens (MSM) and regions (MRM) that carry a label
DEFAULT_BATCH = {"tiny": 64, "small": 32, "base": 8}
IGNORE = -100


def make_batch(cfg: InterBertConfig, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Synthetic pretraining inputs of the documented shapes; at least one MSM and MRM label."""
    msm_pick = torch.rand(batch, TOKENS, generator=gen) < MASK_RATE
    mrm_pick = torch.rand(batch, REGIONS, generator=gen) < MASK_RATE
    msm_pick[0, 1] = mrm_pick[0, 0] = True
    input_ids = torch.randint(0, cfg.vocab_size, (batch, TOKENS), generator=gen)
    mrm_classes = torch.randint(0, cfg.num_region_classes, (batch, REGIONS), generator=gen)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones(batch, TOKENS, dtype=torch.bool),
        "region_features": torch.randn(batch, REGIONS, cfg.region_feature_dim, generator=gen).relu(),
        "region_boxes": torch.rand(batch, REGIONS, cfg.box_dim, generator=gen),
        "region_mask": torch.ones(batch, REGIONS, dtype=torch.bool),
        "msm_labels": torch.where(msm_pick, input_ids, IGNORE),
        "mrm_labels": torch.where(mrm_pick, mrm_classes, IGNORE),
        "itm_labels": torch.randint(0, 2, (batch,), generator=gen),
    }


class HfStack(nn.Module):
    """InterBERT's layout built from transformers' BertLayer: interaction layers over
    (B, 17 + 36, H), then image and text extractors over (B, 17, H) and (B, 36, H).
    Embeddings and heads are simple stand-ins with the same matmul sizes as taomm's
    (region Linear 2048->H, token Embedding, MSM transform + tied decoder on the labelled
    tokens, MRM and ITM heads), so the two do comparable work."""

    def __init__(self, cfg: InterBertConfig) -> None:
        super().__init__()
        h = cfg.hidden_size
        bert = BertConfig(hidden_size=h, num_attention_heads=cfg.num_attention_heads,
                          intermediate_size=cfg.intermediate_size, hidden_act="gelu",
                          hidden_dropout_prob=cfg.hidden_dropout_prob,
                          attention_probs_dropout_prob=cfg.attention_probs_dropout_prob,
                          layer_norm_eps=cfg.layer_norm_eps)
        bert._attn_implementation = "sdpa"  # a bool (B, 1, 1, T) mask goes straight to SDPA
        self.words = nn.Embedding(cfg.vocab_size, h)
        self.positions = nn.Embedding(TOKENS, h)
        self.region = nn.Linear(cfg.region_feature_dim, h)
        self.box = nn.Linear(cfg.box_dim, h)
        self.text_norm, self.region_norm = nn.LayerNorm(h), nn.LayerNorm(h)
        self.interaction = nn.ModuleList(BertLayer(bert) for _ in range(cfg.num_interaction_layers))
        self.image_extractor = nn.ModuleList(BertLayer(bert) for _ in range(cfg.num_extractor_layers))
        self.text_extractor = nn.ModuleList(BertLayer(bert) for _ in range(cfg.num_extractor_layers))
        self.msm_transform = nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.LayerNorm(h))
        self.msm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.mrm = nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.LayerNorm(h), nn.Linear(h, cfg.num_region_classes))
        self.itm = nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.Linear(h, 1))
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
        for module in self.modules():  # taomm's (BERT's) init, so both see alike values
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=cfg.initializer_range)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    @staticmethod
    def _run(layers: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            x = layer(x, mask[:, None, None, :])  # mask (B, T) -> (B, 1, 1, T), True = attend
        return x

    def forward(self, input_ids, attention_mask, region_features, region_boxes, region_mask,
                msm_labels, mrm_labels, itm_labels) -> torch.Tensor:
        B = input_ids.shape[0]
        feats = torch.cat([region_features.mean(1, keepdim=True), region_features], 1)  # (B, 17, D)
        boxes = torch.cat([region_boxes.new_ones(B, 1, region_boxes.shape[-1]), region_boxes], 1)
        image = self.dropout(self.region_norm(self.region(feats)) + self.box(boxes))  # (B, 17, H)
        text = self.dropout(self.text_norm(self.words(input_ids) + self.positions.weight))  # (B, 36, H)
        image_mask = torch.cat([region_mask.new_ones(B, 1), region_mask], 1)
        n_image = image.shape[1]
        x = self._run(self.interaction, torch.cat([image, text], 1), torch.cat([image_mask, attention_mask], 1))
        image = self._run(self.image_extractor, x[:, :n_image], image_mask)
        text = self._run(self.text_extractor, x[:, n_image:], attention_mask)
        picked = msm_labels != IGNORE
        msm_logits = F.linear(self.msm_transform(text[picked]), self.words.weight, self.msm_bias)
        mrm_picked = mrm_labels != IGNORE
        mrm_logits = self.mrm(image[:, 1:][mrm_picked])
        itm_logits = self.itm(image[:, 0] * text[:, 0]).squeeze(-1)
        return (F.cross_entropy(msm_logits.float(), msm_labels[picked])
                + F.cross_entropy(mrm_logits.float(), mrm_labels[mrm_picked])
                + F.binary_cross_entropy_with_logits(itm_logits.float(), itm_labels.float()))


def step_fn(model: nn.Module, batch: dict[str, torch.Tensor], bf16: bool, taomm: bool) -> Callable[[], None]:
    """One optimizer-free step: zero_grad + forward + backward, optionally under bf16 autocast."""

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss if taomm else model(**batch)
        loss.backward()

    return step


def time_step(step: Callable[[], None], warmup: int, min_steps: int, min_seconds: float) -> list[float]:
    """Seconds of each step, timed for at least min_steps steps and min_seconds."""
    for _ in range(warmup):
        step()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_steps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def step_flops(cfg: InterBertConfig, batch: dict[str, torch.Tensor]) -> float:
    """Matmul FLOPs of one taomm step (taomm.train.flops: forward + backward)."""
    return pretraining_step_flops(cfg, batch["input_ids"].shape[0], TOKENS, REGIONS,
                                  int((batch["msm_labels"] != IGNORE).sum()), int((batch["mrm_labels"] != IGNORE).sum()))


def bench_preset(name: str, batch_size: int, rounds: int, warmup: int, min_steps: int,
                 min_seconds: float) -> dict:
    """Step times of the four variants (taomm / hf x fp32 / bf16): the fastest step (as timeit
    reports: the machine may be shared, and interference only ever adds time) and the median."""
    cfg = InterBertConfig.from_preset(name, lang="zh")
    torch.manual_seed(0)
    batch = make_batch(cfg, batch_size, torch.Generator().manual_seed(0))
    ours = InterBertForPretraining(cfg).train()
    hf = HfStack(cfg).train()
    steps = {
        "taomm_fp32": step_fn(ours, batch, bf16=False, taomm=True),
        "hf_fp32": step_fn(hf, batch, bf16=False, taomm=False),
        "taomm_bf16": step_fn(ours, batch, bf16=True, taomm=True),
        "hf_bf16": step_fn(hf, batch, bf16=True, taomm=False),
    }
    times: dict[str, list[float]] = {key: [] for key in steps}
    for i in range(rounds):  # alternate the variants so drift in machine speed hits all alike
        for key, step in steps.items():
            times[key] += time_step(step, warmup if i == 0 else 0, min_steps, min_seconds)
    return {
        "preset": name, "batch": batch_size,
        "params_taomm": sum(p.numel() for p in ours.parameters()),
        "params_hf": sum(p.numel() for p in hf.parameters()),
        "gflop_per_step": step_flops(cfg, batch) / 1e9,
        **{f"{key}_s": min(t) for key, t in times.items()},
        **{f"{key}_median_s": statistics.median(t) for key, t in times.items()},
        "steps_timed": {key: len(t) for key, t in times.items()},
    }


def summarise(r: dict, peak_fp32: float, peak_bf16: float) -> dict:
    """Samples/s, ratios and fraction of matmul peak of one preset's timings."""
    b, gflop = r["batch"], r["gflop_per_step"]
    out = {"preset": r["preset"], "batch": b, "params_taomm": r["params_taomm"], "params_hf": r["params_hf"],
           "gflop_per_step": round(gflop, 3)}
    for key in ("taomm_fp32", "taomm_bf16", "hf_fp32", "hf_bf16"):
        out[f"{key}_step_s"] = round(r[f"{key}_s"], 5)
        out[f"{key}_median_step_s"] = round(r[f"{key}_median_s"], 5)
        out[f"{key}_samples_per_s"] = round(b / r[f"{key}_s"], 1)
    out["bf16_over_fp32"] = round(r["taomm_fp32_s"] / r["taomm_bf16_s"], 2)
    out["hf_bf16_over_fp32"] = round(r["hf_fp32_s"] / r["hf_bf16_s"], 2)
    out["taomm_over_hf_fp32"] = round(r["hf_fp32_s"] / r["taomm_fp32_s"], 2)
    out["taomm_over_hf_bf16"] = round(r["hf_bf16_s"] / r["taomm_bf16_s"], 2)
    out["gflops_fp32"] = round(gflop / r["taomm_fp32_s"], 1)
    out["gflops_bf16"] = round(gflop / r["taomm_bf16_s"], 1)
    out["fraction_fp32_peak"] = round(out["gflops_fp32"] / peak_fp32, 3)
    out["fraction_bf16_peak"] = round(out["gflops_bf16"] / peak_bf16, 3)
    out["steps_timed"] = r["steps_timed"]
    return out


def print_table(rows: list[dict]) -> None:
    head = (f"{'preset':<7}{'batch':>6}{'taomm fp32':>12}{'taomm bf16':>12}{'bf16/fp32':>11}"
            f"{'hf fp32':>10}{'hf bf16':>10}{'taomm/hf fp32':>15}{'taomm/hf bf16':>15}"
            f"{'GFLOP/s fp32':>14}{'% fp32 peak':>13}{'GFLOP/s bf16':>14}{'% bf16 peak':>13}")
    print(head)
    for r in rows:
        print(f"{r['preset']:<7}{r['batch']:>6}{r['taomm_fp32_samples_per_s']:>12.1f}"
              f"{r['taomm_bf16_samples_per_s']:>12.1f}{r['bf16_over_fp32']:>10.2f}x"
              f"{r['hf_fp32_samples_per_s']:>10.1f}{r['hf_bf16_samples_per_s']:>10.1f}"
              f"{r['taomm_over_hf_fp32']:>14.2f}x{r['taomm_over_hf_bf16']:>14.2f}x"
              f"{r['gflops_fp32']:>14.1f}{100 * r['fraction_fp32_peak']:>12.1f}%"
              f"{r['gflops_bf16']:>14.1f}{100 * r['fraction_bf16_peak']:>12.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="tiny,small,base")
    parser.add_argument("--quick", action="store_true", help="tiny and small only, shorter timing")
    parser.add_argument("--rounds", type=int, default=2, help="alternating timing rounds; the fastest step is kept")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="least timed seconds per variant and round")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    presets = ["tiny", "small"] if args.quick else args.presets.split(",")
    rounds, min_seconds = (1, 1.0) if args.quick else (args.rounds, args.min_seconds)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    t0, load_start = time.perf_counter(), os.getloadavg()[0]
    # The peaks are taken before and after the steps (best of both), so a busy spell at
    # either end does not understate them.
    before = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    timings = [bench_preset(name, DEFAULT_BATCH[name], rounds, warmup=2, min_steps=3, min_seconds=min_seconds)
               for name in presets]
    peak_fp32 = max(before[0], matmul_peak(torch.float32))
    peak_bf16 = max(before[1], matmul_peak(torch.bfloat16))
    rows = [summarise(r, peak_fp32, peak_bf16) for r in timings]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; hf stack: BertLayer, sdpa attention")
    print(f"matmul peak (best of 1024^3, 2048^3): fp32 {peak_fp32:.1f} GFLOP/s, bf16 {peak_bf16:.1f} GFLOP/s "
          f"({peak_bf16 / peak_fp32:.2f}x)")
    print("samples/s (forward + backward, 16 regions + 36 tokens); ratios are speed-ups")
    print_table(rows)
    load_end = os.getloadavg()[0]
    print(f"goals: bf16/fp32 >= 2.5x; taomm/hf >= 1.0x; wall {time.perf_counter() - t0:.0f} s; "
          f"1-min load average {load_start:.2f} at start, {load_end:.2f} at end ({os.cpu_count()} CPUs)")
    print(json.dumps({"threads": torch.get_num_threads(), "hf_attention": "sdpa",
                      "load_average_start": round(load_start, 2), "load_average_end": round(load_end, 2),
                      "peak_gflops_fp32": round(peak_fp32, 1), "peak_gflops_bf16": round(peak_bf16, 1),
                      "presets": rows}))


if __name__ == "__main__":
    main()
