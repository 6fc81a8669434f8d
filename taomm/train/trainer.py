"""The training loop shared by pretraining and finetuning.

One process or ``torchrun`` DDP (NCCL on GPUs, gloo on CPU); bf16 autocast; gradient
accumulation; each loss averaged over its labelled positions of the *whole* global batch
(counts summed over micro-batches and ranks before the backward passes), so a step gives
the same loss however the batch is split; gradient clipping; AdamW with no decay on biases
and LayerNorm weights; linear warm-up then linear decay; a finite-loss guard; atomic
checkpoints every N steps (last K kept) with exact resume; SIGTERM -> a checkpoint at the
next step boundary and a clean return; ``RUN/metrics.jsonl`` and TensorBoard scalars.

A task tells the trainer what to train (see :class:`TrainTask`): the dataset and collate
function, the loss names and weights, and per batch the labelled-position counts and
summed losses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from taomm.device import autocast
from taomm.errors import TaommError
from taomm.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from taomm.train.distributed import DistInfo, all_reduce_sum
from taomm.train.sampler import StepBatches

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.jsonl"

# Dense bf16 peak FLOP/s per GPU, for MFU (substring of torch.cuda.get_device_name).
GPU_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "H800": 989e12, "A100": 312e12, "A800": 312e12,
                 "L40S": 362e12, "L4": 121e12, "A10": 125e12, "4090": 165e12, "3090": 71e12, "V100": 125e12}


class NonFiniteLossError(TaommError):
    pass


@dataclass
class TrainConfig:
    max_steps: int = 1000
    batch_size: int = 32  # global: samples per optimizer step over all ranks and micro-batches
    accum_steps: int = 1  # micro-batches per step on each rank
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.9999)
    eps: float = 1e-6
    weight_decay: float = 0.01
    warmup_steps: int | None = None  # None: 10% of max_steps, at most 10,000 (the paper's)
    max_grad_norm: float = 1.0
    bf16: bool = True
    save_every: int = 500
    keep_last: int = 3
    log_every: int = 10
    seed: int = 0
    workers: int = 2
    max_bad_steps: int = 5  # non-finite steps in a row before giving up

    def warmup(self) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return min(10_000, max(1, self.max_steps // 10))


class TrainTask(Protocol):
    loss_names: Sequence[str]
    loss_weights: Sequence[float]
    dataset: torch.utils.data.Dataset

    def collate(self, examples: list[Any]) -> dict[str, torch.Tensor]: ...

    def counts(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(k,) float: the labelled positions each loss averages over in this batch."""

    def loss_sums(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        """(k,) float: each loss summed over its labelled positions (with the graph)."""

    def flops(self, batch: dict[str, torch.Tensor]) -> float:
        """Matmul FLOPs of a training step (forward + backward) on this batch."""

    # Optional: ``after_step(model)`` runs after each optimizer step (on the unwrapped model,
    # e.g. to update a moving average of the weights); ``extra_state()`` returns tensors saved
    # with each checkpoint and ``load_extra_state(state)`` takes them back on resume.


@dataclass
class TrainResult:
    start_step: int
    step: int
    skipped: int
    stopped: bool  # by SIGTERM, before max_steps
    seconds: float
    samples_per_s: float
    last_metrics: dict[str, Any] = field(default_factory=dict)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on weights, none on biases and LayerNorm weights."""
    no_decay: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    decay, plain, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (plain if name.endswith("bias") or id(p) in no_decay or p.ndim == 0 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def linear_schedule(warmup: int, max_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (max_steps - step) / max(1, max_steps - warmup))
    return factor


def gpu_peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in GPU_PEAK_BF16.items() if key in name), None)


class Trainer:
    def __init__(self, config: TrainConfig, info: DistInfo | None = None) -> None:
        self.config = config
        self.info = info or DistInfo()
        self._stop = False
        micro, rest = divmod(config.batch_size, config.accum_steps * self.info.world_size)
        if micro < 1 or rest:
            raise TaommError(f"batch size {config.batch_size} does not split into {config.accum_steps} "
                             f"micro-batches on each of {self.info.world_size} processes")
        self.micro_batch = micro

    def request_stop(self, *_: Any) -> None:
        """Checkpoint at the next step boundary and return (the SIGTERM handler)."""
        self._stop = True

    def fit(self, model: nn.Module, task: TrainTask, run: str | Path, resume: bool = False,
            on_step: Callable[[int, dict[str, Any]], None] | None = None) -> TrainResult:
        cfg, info = self.config, self.info
        run = Path(run)
        model.to(info.device)
        optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas,
                                      eps=cfg.eps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(cfg.warmup(), cfg.max_steps))
        start, skipped, rng = 0, 0, None
        latest = latest_checkpoint(run)
        if resume:
            if latest is None:
                raise TaommError(f"--resume: no complete checkpoint in {run / 'checkpoints'}")
            state, rng = load_checkpoint(latest[1], model, info.rank)
            try:
                optimizer.load_state_dict(state["optimizer"])
            except ValueError as err:  # other trainable parameters: a loss switched on or off
                raise TaommError(f"--resume: {latest[1]} was trained with other settings (its optimizer holds "
                                 f"other parameters: {err}); resume with the run's own loss weights "
                                 f"({run / 'run.json'})") from None
            scheduler.load_state_dict(state["scheduler"])
            start, skipped = int(state["step"]), int(state["skipped"])
            if "task_state" in state and hasattr(task, "load_extra_state"):
                task.load_extra_state(state["task_state"])
            if info.is_main:
                log.info("resuming from %s (step %d)", latest[1], start)
        elif latest is not None:
            raise TaommError(f"{run} already has checkpoints (latest: step {latest[0]}); pass --resume to "
                             "continue it or choose another --out")
        if info.is_main:
            run.mkdir(parents=True, exist_ok=True)
            _truncate_metrics(run / METRICS_FILE, start)
        if start >= cfg.max_steps:
            return TrainResult(start, start, skipped, False, 0.0, 0.0)

        ddp = model
        if info.distributed:
            ddp = DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
        sampler = StepBatches(self.micro_batch, cfg.accum_steps, info.rank, info.world_size, start, cfg.max_steps)
        loader = DataLoader(task.dataset, batch_sampler=sampler, collate_fn=task.collate, num_workers=cfg.workers,
                            pin_memory=info.device.type == "cuda", generator=torch.Generator().manual_seed(cfg.seed),
                            persistent_workers=False, prefetch_factor=4 if cfg.workers else None)
        batches = iter(loader)  # before the RNG is restored: nothing here may draw from it
        if rng is not None:
            _set_rng(rng)
        elif resume:
            log.warning("the checkpoint has no RNG state for rank %d: dropout will differ from the first run",
                        info.rank)
        else:
            torch.manual_seed(cfg.seed + info.rank)
        weights = torch.tensor(list(task.loss_weights), dtype=torch.float32, device=info.device)
        names = list(task.loss_names)
        k = len(names)
        peak = gpu_peak_flops(info.device)
        writer = _tensorboard(run) if info.is_main else None
        metrics = open(run / METRICS_FILE, "a", encoding="utf-8") if info.is_main else None  # noqa: SIM115
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, self.request_stop)
        step, bad_in_row, stopped = start, 0, False
        window: dict[str, float] = {"steps": 0, "time": 0.0, "flops": 0.0, **{n: 0.0 for n in names}}
        t_begin = t_window = time.perf_counter()
        last: dict[str, Any] = {}
        try:
            model.train()
            while step < cfg.max_steps:
                micro = [_to_device(next(batches), info.device) for _ in range(cfg.accum_steps)]
                counts = all_reduce_sum(sum(task.counts(b) for b in micro).to(info.device, torch.float32), info)
                denom = counts.clamp(min=1)
                sums = torch.zeros(k, device=info.device)
                flops = 0.0
                for j, batch in enumerate(micro):
                    sync = not info.distributed or j == len(micro) - 1
                    with contextlib.nullcontext() if sync else ddp.no_sync():
                        with autocast(info.device, cfg.bf16):
                            parts = task.loss_sums(ddp, batch, step).float()
                        loss = (weights * parts / denom).sum() * info.world_size
                        loss.backward()
                    sums += parts.detach()
                    if peak is not None:
                        flops += task.flops(batch)
                flags = torch.cat([sums, torch.tensor([float(not torch.isfinite(sums).all()), float(self._stop),
                                                        flops], device=info.device)])
                all_reduce_sum(flags, info)
                parts_mean, bad, self._stop = flags[:k] / denom, bool(flags[k] > 0), bool(flags[k + 1] > 0)
                grad_norm = float("nan")
                if not bad:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
                    bad = not math.isfinite(grad_norm)
                lr = scheduler.get_last_lr()[0]
                if bad:
                    skipped += 1
                    bad_in_row += 1
                    optimizer.zero_grad(set_to_none=True)
                    if info.is_main:
                        log.warning("step %d: non-finite loss or gradient, step skipped", step + 1)
                    if bad_in_row >= cfg.max_bad_steps:
                        raise NonFiniteLossError(
                            f"{bad_in_row} non-finite steps in a row (up to step {step + 1}): lower --lr, "
                            "check the inputs for NaN/inf features, or try --fp32")
                else:
                    bad_in_row = 0
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    if hasattr(task, "after_step"):
                        task.after_step(model)
                with warnings.catch_warnings():  # a skipped first step has no optimizer.step() before
                    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                    scheduler.step()
                step += 1
                if not bad:
                    window["steps"] += 1
                    for n, v in zip(names, parts_mean.tolist(), strict=True):
                        window[n] += v
                window["flops"] += float(flags[k + 2])
                if step % cfg.log_every == 0 or step == cfg.max_steps or self._stop:
                    if info.device.type == "cuda":
                        torch.cuda.synchronize(info.device)
                    now = time.perf_counter()
                    elapsed = now - t_window
                    done = step - (last.get("step", start))
                    last = {"step": step, **_window_means(window, names, weights.tolist()), "lr": lr,
                            "grad_norm": grad_norm, "skipped": skipped,
                            "samples_per_s": round(done * cfg.batch_size / max(elapsed, 1e-9), 2)}
                    if peak is not None:
                        last["mfu"] = round(window["flops"] / max(elapsed, 1e-9) / (peak * info.world_size), 4)
                    if metrics is not None:
                        metrics.write(json.dumps(last) + "\n")
                        metrics.flush()
                    if writer is not None:
                        for key, value in last.items():
                            if key != "step" and isinstance(value, float | int) and math.isfinite(value):
                                writer.add_scalar(f"train/{key}", value, step)
                    window = {"steps": 0, "time": 0.0, "flops": 0.0, **{n: 0.0 for n in names}}
                    t_window = now
                if on_step is not None and info.is_main:
                    on_step(step, last)
                if step % cfg.save_every == 0 or step == cfg.max_steps or self._stop:
                    self._save(run, step, model, optimizer, scheduler, skipped, task)
                if self._stop and step < cfg.max_steps:
                    stopped = True
                    if info.is_main:
                        log.warning("stopped by SIGTERM at step %d (checkpoint saved)", step)
                    break
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if metrics is not None:
                metrics.close()
            if writer is not None:
                writer.close()
            del batches
        seconds = time.perf_counter() - t_begin
        return TrainResult(start, step, skipped, stopped, seconds,
                           (step - start) * cfg.batch_size / max(seconds, 1e-9), last)

    def _save(self, run: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
              scheduler: Any, skipped: int, task: TrainTask) -> None:
        state = {"step": step, "skipped": skipped, "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "config": _plain(asdict(self.config)),
                 "world_size": self.info.world_size}
        if hasattr(task, "extra_state"):
            state["task_state"] = task.extra_state()
        save_checkpoint(run, step, model, state, _get_rng(), self.info, self.config.keep_last)


def _window_means(window: dict[str, float], names: list[str], weights: list[float]) -> dict[str, float]:
    n = window["steps"]
    if not n:
        return {"loss": float("nan"), **{name: float("nan") for name in names}}
    parts = {name: window[name] / n for name in names}
    loss = sum(w * parts[name] for name, w in zip(names, weights, strict=True))
    return {"loss": round(loss, 6), **{name: round(v, 6) for name, v in parts.items()}}


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _get_rng() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(value: Any) -> Any:
    """Config values as lists/ints/floats/strings (what weights_only loading accepts)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _truncate_metrics(path: Path, step: int) -> None:
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
