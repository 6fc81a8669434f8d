"""The training loop shared by pretraining and finetuning.

One process or ``torchrun`` DDP (NCCL on GPUs, gloo on CPU; the caller wraps the model with
:func:`taomm.train.distributed.parallelize`, the loop only runs it); bf16 autocast; gradient
accumulation; each loss averaged over its labelled positions of the *whole* global batch
(counts summed over micro-batches and ranks before the backward passes), so a step gives
the same loss however the batch is split; gradient clipping; AdamW with no decay on biases
and LayerNorm weights; linear warm-up then linear decay; a finite-loss guard; atomic
checkpoints every N steps (last K kept) with exact resume; SIGTERM -> a checkpoint at the
next step boundary and a clean return; ``RUN/metrics.jsonl`` and TensorBoard scalars
(:mod:`taomm.train.metrics`).

A task tells the trainer what to train (see :class:`TrainTask`): the dataset and collate
function, the loss names and weights, and per batch the labelled-position counts and
summed losses.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader

from taomm.device import autocast
from taomm.errors import OptionError, TaommError
from taomm.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from taomm.train.distributed import DistInfo, all_reduce_sum, unwrap
from taomm.train.metrics import METRICS_FILE, MetricsWindow, gpu_peak_flops, truncate_metrics
from taomm.train.sampler import StepBatches

log = logging.getLogger(__name__)


class NonFiniteLossError(OptionError):
    """Training diverged; the message names the options that may mend it."""


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


@dataclass
class _Progress:
    """Where a run stands: steps done, steps skipped (non-finite), skipped in a row, stopped."""

    step: int
    skipped: int
    bad_in_row: int = 0
    stopped: bool = False


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
        """Train ``model`` on ``task`` up to ``config.max_steps``, logging and checkpointing into
        the folder ``run``.

        ``model`` is the module to train; under torchrun, wrapped by
        :func:`taomm.train.distributed.parallelize` first. With ``resume``, continue exactly from
        the run's latest checkpoint; without it, refuse a run that has checkpoints.
        ``on_step(step, metrics)`` runs on the main process after each step, with the last
        logged metrics. Each step: ``accum_steps`` micro-batches per rank
        (:meth:`_forward_backward`), one packed all-reduce (:meth:`_all_reduce`), an optimizer
        step or a skip (:meth:`_optimizer_step`), then the metrics line, the checkpoint and the
        SIGTERM check when due.
        """
        cfg, info = self.config, self.info
        run, inner = Path(run), unwrap(model)
        if info.distributed and inner is model:
            raise TaommError("under torchrun, wrap the model with taomm.train.distributed.parallelize before fit")
        inner.to(info.device)
        optimizer = torch.optim.AdamW(param_groups(inner, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas,
                                      eps=cfg.eps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(cfg.warmup(), cfg.max_steps))
        progress, rng = self._resume(inner, optimizer, scheduler, task, run, resume)
        start = progress.step
        if start >= cfg.max_steps:
            return TrainResult(start, start, progress.skipped, False, 0.0, 0.0)
        batches = iter(self._loader(task, start))  # before the RNG is restored: nothing here may draw from it
        self._seed(rng, resume)
        weights = torch.tensor(list(task.loss_weights), dtype=torch.float32, device=info.device)
        window = MetricsWindow(run, list(task.loss_names), weights.tolist(), start, cfg, info,
                               gpu_peak_flops(info.device))
        t_begin = time.perf_counter()
        try:
            with self._stop_on_sigterm():
                model.train()
                while progress.step < cfg.max_steps:
                    micro = [_to_device(next(batches), info.device) for _ in range(cfg.accum_steps)]
                    sums, denom, flops = self._forward_backward(model, task, micro, progress.step, weights,
                                                                window.peak is not None)
                    means, bad, flops = self._all_reduce(sums, denom, flops)
                    grad_norm, lr, bad = self._optimizer_step(inner, task, optimizer, scheduler, bad, progress)
                    progress.step += 1
                    window.add(None if bad else means.tolist(), flops)
                    if self._due(progress.step, cfg.log_every):
                        window.write(progress.step, lr, grad_norm, progress.skipped)
                    if on_step is not None and info.is_main:
                        on_step(progress.step, window.last)
                    if self._due(progress.step, cfg.save_every):
                        self._save(run, progress.step, inner, optimizer, scheduler, progress.skipped, task)
                    if self._stop and progress.step < cfg.max_steps:
                        progress.stopped = True
                        if info.is_main:
                            log.warning("stopped by SIGTERM at step %d (checkpoint saved)", progress.step)
                        break
        finally:
            window.close()
            del batches
        seconds = time.perf_counter() - t_begin
        return TrainResult(start, progress.step, progress.skipped, progress.stopped, seconds,
                           (progress.step - start) * cfg.batch_size / max(seconds, 1e-9), window.last)

    # --- resume -------------------------------------------------------------------------

    def _resume(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, task: TrainTask,
                run: Path, resume: bool) -> tuple[_Progress, dict[str, Any] | None]:
        """With ``resume``, load the latest checkpoint into the model, optimizer, scheduler and
        task and return its progress and this rank's RNG state; without it, refuse a run that has
        checkpoints. Then (main process) create the run folder and drop metrics logged past the
        start (a killed run may have logged beyond its checkpoint)."""
        progress, rng = _Progress(0, 0), None
        latest = latest_checkpoint(run)
        if resume:
            if latest is None:
                raise OptionError(f"{{resume}}: no complete checkpoint in {run / 'checkpoints'}", "resume")
            state, rng = load_checkpoint(latest[1], model, self.info.rank, optimizer)
            try:
                optimizer.load_state_dict(state["optimizer"])
            except ValueError as err:  # other trainable parameters: a loss switched on or off
                raise OptionError(f"{{resume}}: {latest[1]} was trained with other settings (its optimizer holds "
                                  f"other parameters: {err}); resume with the run's own loss weights "
                                  f"({run / 'run.json'})", "resume") from None
            scheduler.load_state_dict(state["scheduler"])
            progress = _Progress(int(state["step"]), int(state["skipped"]))
            if "task_state" in state and hasattr(task, "load_extra_state"):
                task.load_extra_state(state["task_state"])
            if self.info.is_main:
                log.info("resuming from %s (step %d)", latest[1], progress.step)
        elif latest is not None:
            raise OptionError(f"{run} already has checkpoints (latest: step {latest[0]}); pass {{resume=True}} to "
                              "continue it or choose another {run}", "resume=True", "run")
        if self.info.is_main:
            run.mkdir(parents=True, exist_ok=True)
            truncate_metrics(run / METRICS_FILE, progress.step)
        return progress, rng

    def _seed(self, rng: dict[str, Any] | None, resume: bool) -> None:
        """This rank's RNG (dropout): restored from the checkpoint, else seeded per rank."""
        if rng is not None:
            _set_rng(rng)
        elif resume:
            log.warning("the checkpoint has no RNG state for rank %d: dropout will differ from the first run",
                        self.info.rank)
        else:
            torch.manual_seed(self.config.seed + self.info.rank)

    # --- loader -------------------------------------------------------------------------

    def _loader(self, task: TrainTask, start: int) -> DataLoader:
        """This rank's micro-batches from step ``start`` on (``StepBatches``: the same global
        batches whatever the number of ranks, workers or restarts)."""
        cfg, info = self.config, self.info
        sampler = StepBatches(self.micro_batch, cfg.accum_steps, info.rank, info.world_size, start, cfg.max_steps)
        return DataLoader(task.dataset, batch_sampler=sampler, collate_fn=task.collate, num_workers=cfg.workers,
                          pin_memory=info.device.type == "cuda", generator=torch.Generator().manual_seed(cfg.seed),
                          persistent_workers=False, prefetch_factor=4 if cfg.workers else None)

    # --- step ---------------------------------------------------------------------------

    def _forward_backward(self, model: nn.Module, task: TrainTask, micro: list[dict[str, torch.Tensor]], step: int,
                          weights: torch.Tensor, count_flops: bool) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Forward and backward over one step's micro-batches on this rank. Each loss is divided
        by its labelled positions in the whole global batch (counts all-reduced first), so the
        gradient is that of the global mean however the batch is split; DDP averages gradients
        over ranks, hence the ``* world_size``. Returns this rank's loss sums (k,), the global
        counts (k,) and this rank's FLOPs (0 unless ``count_flops``)."""
        info = self.info
        counts = all_reduce_sum(sum(task.counts(b) for b in micro).to(info.device, torch.float32), info)
        denom = counts.clamp(min=1)
        sums = torch.zeros(len(task.loss_names), device=info.device)
        flops = 0.0
        for j, batch in enumerate(micro):
            sync = not info.distributed or j == len(micro) - 1  # DDP all-reduces on the last one only
            with contextlib.nullcontext() if sync else model.no_sync():
                with autocast(info.device, self.config.bf16):
                    parts = task.loss_sums(model, batch, step).float()
                loss = (weights * parts / denom).sum() * info.world_size
                loss.backward()
            sums += parts.detach()
            if count_flops:
                flops += task.flops(batch)
        return sums, denom, flops

    def _all_reduce(self, sums: torch.Tensor, denom: torch.Tensor, flops: float) -> tuple[torch.Tensor, bool, float]:
        """One all-reduce for everything the ranks must agree on after the backward passes.

        Four values travel packed in one float tensor, summed over ranks — one collective per
        step instead of four: ``[loss sums (k) | non-finite flag | stop flag | FLOPs]``. Summed,
        the loss sums over the global counts are the global loss means; a flag > 0 means some
        rank saw a non-finite loss (every rank then skips the step, staying in lockstep) or got
        SIGTERM (every rank stops at this step, so the collective checkpoint is written by
        all); FLOPs add up for MFU. Returns the loss means (k,), whether to skip the step, and
        the step's FLOPs over all ranks."""
        k = len(sums)
        flags = torch.cat([sums, torch.tensor([float(not torch.isfinite(sums).all()), float(self._stop),
                                                flops], device=self.info.device)])
        all_reduce_sum(flags, self.info)
        # `or`: a SIGTERM that lands after the flags were packed must survive to the next step
        self._stop = self._stop or bool(flags[k + 1] > 0)
        return flags[:k] / denom, bool(flags[k] > 0), float(flags[k + 2])

    def _optimizer_step(self, model: nn.Module, task: TrainTask, optimizer: torch.optim.Optimizer, scheduler: Any,
                        bad: bool, progress: _Progress) -> tuple[float, float, bool]:
        """Clip the gradients and step, or skip a step whose loss or gradient norm is not finite
        (raising after ``max_bad_steps`` in a row); then advance the schedule. Returns the
        gradient norm, the step's learning rate and whether it was skipped."""
        cfg = self.config
        grad_norm = float("nan")
        if not bad:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
            bad = not math.isfinite(grad_norm)
        lr = scheduler.get_last_lr()[0]
        if bad:
            progress.skipped += 1
            progress.bad_in_row += 1
            optimizer.zero_grad(set_to_none=True)
            if self.info.is_main:
                log.warning("step %d: non-finite loss or gradient, step skipped", progress.step + 1)
            if progress.bad_in_row >= cfg.max_bad_steps:
                raise NonFiniteLossError(
                    f"{progress.bad_in_row} non-finite steps in a row (up to step {progress.step + 1}): lower "
                    "{lr}, check the inputs for NaN/inf features, or try {bf16=False}", "lr", "bf16=False")
        else:
            progress.bad_in_row = 0
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if hasattr(task, "after_step"):
                task.after_step(model)
        with warnings.catch_warnings():  # a skipped first step has no optimizer.step() before
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            scheduler.step()
        return grad_norm, lr, bad

    def _due(self, step: int, every: int) -> bool:
        """Whether to log or checkpoint after ``step``: every ``every`` steps, at the end, and on SIGTERM."""
        return step % every == 0 or step == self.config.max_steps or self._stop

    @contextlib.contextmanager
    def _stop_on_sigterm(self) -> Iterator[None]:
        """SIGTERM -> :meth:`request_stop` while training (signals reach the main thread only)."""
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, self.request_stop)
        try:
            yield
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    # --- checkpoint ---------------------------------------------------------------------

    def _save(self, run: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
              scheduler: Any, skipped: int, task: TrainTask) -> None:
        state = {"step": step, "skipped": skipped, "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "config": _plain(asdict(self.config)),
                 "world_size": self.info.world_size}
        if hasattr(task, "extra_state"):
            state["task_state"] = task.extra_state()
        save_checkpoint(run, step, model, state, _get_rng(), self.info, self.config.keep_last)


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
