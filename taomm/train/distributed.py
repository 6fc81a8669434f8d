"""The process group, from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK).

Model code never touches ``torch.distributed``: only the trainer does, through this module.
NCCL on GPUs, gloo on CPU. DDP is applied here, from outside the model and the training loop
(:func:`parallelize`), as torchtitan applies its parallelisms.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from taomm.device import resolve_device


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


def setup(device: str | None = None) -> DistInfo:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); pick the device."""
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
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
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
