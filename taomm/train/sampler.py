"""Which examples each rank reads at each step: a function of the step alone."""

from __future__ import annotations

from collections.abc import Iterator

import torch


class StepBatches(torch.utils.data.Sampler):
    """The positions of each micro-batch of this rank, step after step from ``start_step``.

    Step ``s`` covers global positions ``[s*G, (s+1)*G)`` with ``G = micro * accum * world``;
    micro-batch ``j`` of rank ``r`` takes ``micro`` consecutive positions at
    ``s*G + (j*world + r)*micro``. The union over ranks and micro-batches is the whole
    global batch whatever the split.
    """

    def __init__(self, micro_batch: int, accum_steps: int = 1, rank: int = 0, world_size: int = 1,
                 start_step: int = 0, max_steps: int | None = None) -> None:
        self.micro, self.accum, self.rank, self.world = micro_batch, accum_steps, rank, world_size
        self.start_step, self.max_steps = start_step, max_steps

    @property
    def global_batch(self) -> int:
        return self.micro * self.accum * self.world

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while self.max_steps is None or step < self.max_steps:
            base = step * self.global_batch
            for j in range(self.accum):
                first = base + (j * self.world + self.rank) * self.micro
                yield list(range(first, first + self.micro))
            step += 1

    def __len__(self) -> int:
        if self.max_steps is None:
            raise TypeError("an endless sampler has no length")
        return max(0, self.max_steps - self.start_step) * self.accum
