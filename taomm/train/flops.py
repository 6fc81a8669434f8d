"""Matmul FLOPs of an InterBERT training step, for throughput and MFU figures."""

from __future__ import annotations

import time

import torch

from taomm.model.config import InterBertConfig


def matmul_peak(dtype: torch.dtype, sizes: tuple[int, ...] = (1024, 2048), reps: int = 8,
                device: str | torch.device = "cpu") -> float:
    """Best GFLOP/s of a warm n x n @ n x n matmul in ``dtype`` over ``sizes``: the
    machine's practical peak that FLOP utilisation is measured against."""
    gen = torch.Generator().manual_seed(0)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        torch.matmul(a, b)
        for _ in range(reps):
            if a.is_cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            torch.matmul(a, b)
            if a.is_cuda:
                torch.cuda.synchronize()
            best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def layer_macs(cfg: InterBertConfig, count: int, positions: int) -> float:
    """Multiply-accumulates of ``count`` transformer layers over ``positions`` (one sample):
    QKVO and the FFN per position, plus QK^T and AV."""
    h, ffn = cfg.hidden_size, cfg.intermediate_size
    return count * (positions * (4 * h * h + 2 * h * ffn) + 2 * positions * positions * h)


def pretraining_step_flops(cfg: InterBertConfig, batch: int, tokens: int, regions: int, msm_labels: int,
                           mrm_labels: int) -> float:
    """FLOPs of forward + backward of one pretraining step: ``batch`` samples of ``tokens``
    text positions and ``regions`` regions (the image [CLS] is added), with ``msm_labels`` and
    ``mrm_labels`` labelled positions in all. Backward is 2x forward, except the region
    projection, whose input needs no gradient (1x)."""
    h = cfg.hidden_size
    n_image = regions + 1
    macs = batch * (layer_macs(cfg, cfg.num_interaction_layers, n_image + tokens)
                    + layer_macs(cfg, cfg.num_extractor_layers, n_image)
                    + layer_macs(cfg, cfg.num_extractor_layers, tokens) + n_image * cfg.box_dim * h)
    macs += msm_labels * (h * h + h * cfg.vocab_size) + mrm_labels * (h * h + h * cfg.num_region_classes)
    macs += batch * (h * h + h)  # ITM head
    region_macs = batch * n_image * cfg.region_feature_dim * h
    return 2 * (3 * macs + 2 * region_macs)
