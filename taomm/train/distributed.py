"""The process group, from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK).

Model code never touches ``torch.distributed``: only the trainer does, through this module.
NCCL on GPUs, gloo on CPU. DDP is applied here, from outside the model and the training loop
(:func:`parallelize`), as torchtitan applies its parallelisms.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from taomm.device import resolve_device
from taomm.errors import TaommError

_log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str | None = None, timeout: timedelta | None = None) -> DistInfo:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); pick the device.
    ``timeout``: how long a collective waits for the slowest rank (torch's default: minutes)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    want = resolve_device(device)
    if want == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device(want)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", timeout=timeout)
    return DistInfo(rank, world, local_rank, dev)


def parallelize(model: nn.Module, info: DistInfo) -> nn.Module:
    """``model`` moved to ``info.device`` and, under torchrun, wrapped in DistributedDataParallel
    (which broadcasts rank 0's weights and all-reduces the gradients in backward); in a single
    process, ``model`` itself. Call it after freezing parameters: DDP waits for the gradients of
    every parameter that requires one."""
    model.to(info.device)
    if not info.distributed:
        return model
    return DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (what the optimizer, clipping and checkpoints see)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum over ranks, in place (a no-op in a single process)."""
    if info.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_gather_json(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` (JSON-able), in rank order, on every rank; ``[obj]`` through JSON in
    one process. Sent as JSON bytes in uint8 tensors on ``info.device`` (NCCL needs them on the
    GPU): ``all_gather_object`` would pickle. First the lengths, then the bytes padded to the longest."""
    data = json.dumps(obj, sort_keys=True).encode("ascii")  # \u escapes: a lone surrogate survives
    if not info.distributed:
        return [json.loads(data)]
    length = torch.tensor([len(data)], dtype=torch.int64, device=info.device)
    lengths = [torch.zeros_like(length) for _ in range(info.world_size)]
    dist.all_gather(lengths, length)
    longest = max(int(n) for n in lengths)
    padded = torch.zeros(longest, dtype=torch.uint8)
    padded[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    padded = padded.to(info.device)
    chunks = [torch.empty_like(padded) for _ in range(info.world_size)]
    dist.all_gather(chunks, padded)
    return [json.loads(bytes(chunk[: int(n)].cpu().numpy())) for chunk, n in zip(chunks, lengths, strict=True)]


def all_gather_rows(block: np.ndarray, sizes: Sequence[int], info: DistInfo) -> np.ndarray:
    """Every rank's ``block`` (rank r's holds ``sizes[r]`` rows), concatenated in rank order, on
    every rank: one ``all_gather`` of tensors on ``info.device`` padded to the largest block
    (NCCL gathers GPU tensors; no pickle). In one process, ``block``."""
    if not info.distributed:
        return block
    local = torch.from_numpy(np.ascontiguousarray(block))
    padded = torch.zeros((max(1, *sizes), *local.shape[1:]), dtype=local.dtype, device=info.device)
    padded[: len(local)] = local.to(info.device)
    chunks = [torch.empty_like(padded) for _ in range(info.world_size)]
    dist.all_gather(chunks, padded)
    return np.concatenate([chunk[:size].cpu().numpy() for chunk, size in zip(chunks, sizes, strict=True)])


class RanksFailedError(TaommError):
    """Raised on every rank when one or more failed (:func:`raise_if_any_failed`): one
    ``rank K failed: <message>`` per failed rank."""

    def __init__(self, failures: list[tuple[int, str]]) -> None:
        super().__init__(failures)  # the args rebuild it (copy)
        self.failures = failures

    def __str__(self) -> str:
        return "; ".join(f"rank {rank} failed: {message}" for rank, message in self.failures)


def row_share(rows: int, rank: int, world_size: int) -> range:
    """Rank ``rank``'s contiguous block of ``rows`` query rows (sizes differ by one at most)."""
    return range(rows * rank // world_size, rows * (rank + 1) // world_size)


def check_row_shares(shares: list[dict[str, Any]], rows: int, key: str = "rows") -> list[str]:
    """What is wrong with the ranks' shares against ``rows`` query rows (empty: nothing): each
    rank once, each handling exactly its block (``share[key]``: ``[start, stop]``), the blocks
    disjoint and covering 0..rows."""
    problems = []
    if sorted(s["rank"] for s in shares) != list(range(len(shares))):
        problems.append(f"the ranks are {[s['rank'] for s in shares]}, not each of 0 to {len(shares) - 1} once")
    if (handled := sum(s["handled"] for s in shares)) != rows:
        problems.append(f"the ranks handled {handled} {key} in all; there are {rows}")
    end = 0
    for s in sorted(shares, key=lambda s: s[key]):
        start, stop = s[key]
        if start != end:
            problems.append(f"rank {s['rank']}: its {key} start at {start}, not at {end}: "
                            f"{'overlapping' if start < end else 'a gap'}")
        if s["handled"] != stop - start:
            problems.append(f"rank {s['rank']}: handled {s['handled']} {key} of its {stop - start}")
        end = max(end, stop)
    if end != rows:
        problems.append(f"the ranks' {key} end at {end}, not at {rows}")
    return problems


def send_bytes(data: bytes, dst: int, info: DistInfo) -> None:
    """Send ``data`` to rank ``dst`` (its :func:`recv_bytes`): the length, then the bytes, as
    int64 and uint8 tensors on ``info.device`` (NCCL sends from the GPU). No pickle."""
    dist.send(torch.tensor([len(data)], dtype=torch.int64, device=info.device), dst)
    if data:
        dist.send(torch.frombuffer(bytearray(data), dtype=torch.uint8).to(info.device), dst)


def recv_bytes(src: int, info: DistInfo) -> bytes:
    """The bytes rank ``src`` sent with :func:`send_bytes`."""
    length = torch.zeros(1, dtype=torch.int64, device=info.device)
    dist.recv(length, src)
    if int(length) == 0:
        return b""
    data = torch.empty(int(length), dtype=torch.uint8, device=info.device)
    dist.recv(data, src)
    return bytes(data.cpu().numpy())


def on_every_rank(work: Callable[[], T], info: DistInfo) -> T | None:
    """``work()`` on this rank, then :func:`raise_if_any_failed` with its outcome: each rank
    gets its result only when no rank raised. An error travels as one line (a file's as
    ``strerror: filename``; a bug's traceback is logged here). Every rank must call it. In
    one process, ``work()`` itself: its error as raised."""
    if not info.distributed:
        return work()
    error, result = None, None
    try:
        result = work()
    except Exception as exc:  # every rank must reach the gather, or the others wait for it
        error = _one_line(exc)
        if not isinstance(exc, TaommError | OSError):  # a bug: its traceback
            _log.error("rank %d failed", info.rank, exc_info=exc)
    raise_if_any_failed(error, info)
    return result


def _one_line(exc: Exception) -> str:
    """An error as the command line words it: ``strerror: filename`` for a file's."""
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or exc}: {exc.filename}"
    return str(exc) or type(exc).__name__


def raise_if_any_failed(error: str | None, info: DistInfo) -> None:
    """Gather each rank's outcome (``error`` None for success); raise :class:`RanksFailedError`
    on every rank if any failed. Every rank must call it, the failed ones too, or the others
    wait for them until the timeout."""
    outcomes = all_gather_json(error, info)
    failures = [(rank, message) for rank, message in enumerate(outcomes) if message is not None]
    if failures:
        raise RanksFailedError(failures)
