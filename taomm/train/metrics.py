"""What the trainer logs: ``RUN/metrics.jsonl`` (one JSON line per logged step) and
TensorBoard scalars, written by the main process.

A line holds the step, the weighted total ``loss`` and each loss averaged over the steps since
the previous line (skipped steps left out), the learning rate, the gradient norm, the skipped
steps so far, samples/s and, on a known GPU, the model FLOPs utilisation (``mfu``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from taomm.train.distributed import DistInfo
    from taomm.train.trainer import TrainConfig

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.jsonl"

# Dense bf16 peak FLOP/s per GPU, for MFU (substring of torch.cuda.get_device_name).
GPU_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "H800": 989e12, "A100": 312e12, "A800": 312e12,
                 "L40S": 362e12, "L4": 121e12, "A10": 125e12, "4090": 165e12, "3090": 71e12, "V100": 125e12}


def gpu_peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in GPU_PEAK_BF16.items() if key in name), None)


class MetricsWindow:
    """The steps since the last logged line: their loss means, FLOPs and time, written (main
    process) as one line of ``RUN/metrics.jsonl`` and as TensorBoard scalars."""

    def __init__(self, run: Path, names: list[str], weights: list[float], start: int, config: TrainConfig,
                 info: DistInfo, peak: float | None) -> None:
        self.names, self.weights, self.start, self.config, self.info = names, weights, start, config, info
        self.peak = peak  # the GPUs' peak FLOP/s (gpu_peak_flops); None: no MFU (and no FLOP counting)
        self.writer = _tensorboard(run) if info.is_main else None
        self.file = open(run / METRICS_FILE, "a", encoding="utf-8") if info.is_main else None  # noqa: SIM115
        self.last: dict[str, Any] = {}
        self._clear(time.perf_counter())

    def _clear(self, now: float) -> None:
        self.steps, self.flops, self.since = 0, 0.0, now
        self.sums = dict.fromkeys(self.names, 0.0)

    def add(self, means: list[float] | None, flops: float) -> None:
        """One step: its loss means (None for a skipped step) and its FLOPs over all ranks."""
        if means is not None:
            self.steps += 1
            for name, value in zip(self.names, means, strict=True):
                self.sums[name] += value
        self.flops += flops

    def write(self, step: int, lr: float, grad_norm: float, skipped: int) -> None:
        """Log the window as the metrics of ``step`` (into ``self.last``) and start a new one."""
        if self.info.device.type == "cuda":
            torch.cuda.synchronize(self.info.device)  # the queued GPU work belongs to this window's time
        now = time.perf_counter()
        elapsed = max(now - self.since, 1e-9)
        done = step - self.last.get("step", self.start)
        last = {"step": step, **self._means(), "lr": lr, "grad_norm": grad_norm, "skipped": skipped,
                "samples_per_s": round(done * self.config.batch_size / elapsed, 2)}
        if self.peak is not None:
            last["mfu"] = round(self.flops / elapsed / (self.peak * self.info.world_size), 4)
        if self.file is not None:
            self.file.write(json.dumps(last) + "\n")
            self.file.flush()
        if self.writer is not None:
            for key, value in last.items():
                if key != "step" and isinstance(value, float | int) and math.isfinite(value):
                    self.writer.add_scalar(f"train/{key}", value, step)
        self.last = last
        self._clear(now)

    def _means(self) -> dict[str, float]:
        """The weighted total ``loss`` and each loss, averaged over the window's finite steps."""
        if not self.steps:
            return {"loss": float("nan"), **{name: float("nan") for name in self.names}}
        parts = {name: self.sums[name] / self.steps for name in self.names}
        loss = sum(w * parts[name] for name, w in zip(self.names, self.weights, strict=True))
        return {"loss": round(loss, 6), **{name: round(v, 6) for name, v in parts.items()}}

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.writer is not None:
            self.writer.close()



def truncate_metrics(path: Path, step: int) -> None:
    """Drop logged steps after ``step`` (a killed run may have logged past its checkpoint)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text("utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept), "utf-8")
    tmp.replace(path)


def _tensorboard(run: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency; keep training if it was removed
        log.warning("tensorboard is not installed: no TensorBoard scalars")
        return None
    return SummaryWriter(str(run / "tensorboard"))
