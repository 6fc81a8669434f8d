"""Micro-batching: concurrent calls gathered into one batch call in a worker thread.

A model call costs nearly the same for one query as for thirty (a forward pass of the text
encoder is mostly fixed costs on a CPU), so a server that answers each request on its own
spends its cores on overhead. ``MicroBatcher`` puts each call in a bounded asyncio queue; a
worker task takes the first waiting call, keeps collecting until it holds ``max_batch`` calls
or ``window_ms`` have passed since it took the first, then runs them all through
``run_batch`` in a worker thread, while the event loop goes on reading and answering
requests. Each caller gets its own result, or its own exception: ``run_batch`` returns one
entry per call, an exception instance for a call that failed alone.

A call that finds the queue full is refused at once with ``Overloaded`` (a server answers
503 and Retry-After) rather than waiting without bound. At most ``queue_size`` calls wait,
plus the ``max_batch`` of each batch being collected or run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Defaults for search serving, measured with benchmarks/serve_load.py (2 cores, 50 clients
# on loopback; the figures are in ``taomm serve --help``): a window of 2 to 10 ms made no
# clear difference; a batch of 64 (all 50 clients' searches at once) ran ~25% more searches
# a second than 32; a second worker (1 torch thread each, or 2) was no faster on 2 cores.
WINDOW_MS, MAX_BATCH, QUEUE_SIZE, BATCH_WORKERS = 5.0, 64, 256, 1


class Overloaded(Exception):
    """The batcher's queue is full (or it is closing): try again shortly."""


@dataclass
class _Call:
    item: Any
    future: asyncio.Future[Any]


@dataclass
class BatchStats:
    """Counts since the start, to see how full the batches were."""

    batches: int = 0
    calls: int = 0
    refused: int = 0
    largest: int = 0
    busy_s: float = 0.0  # wall time spent in run_batch


class MicroBatcher(Generic[T, R]):
    """Gathers concurrent ``submit`` calls into batches for ``run_batch`` (in a thread).

    ``run_batch(items) -> results``: one result per item, in order; an exception instance in
    place of a result is raised to that item's caller alone. ``workers``: batches run at the
    same time (each worker collects its own batch; 1 keeps the model calls in order).
    Create, ``start`` and ``submit`` inside the event loop that serves the requests.
    """

    def __init__(self, run_batch: Callable[[list[T]], Sequence[R | BaseException]], window_ms: float = WINDOW_MS,
                 max_batch: int = MAX_BATCH, queue_size: int = QUEUE_SIZE, workers: int = BATCH_WORKERS) -> None:
        if window_ms < 0 or max_batch < 1 or queue_size < 1 or workers < 1:
            raise ValueError("window_ms >= 0, max_batch >= 1, queue_size >= 1 and workers >= 1, please")
        self.run_batch = run_batch
        self.window = window_ms / 1000
        self.max_batch, self.queue_size, self.workers = max_batch, queue_size, workers
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Call] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Start the worker tasks (in the running loop); idempotent."""
        if self._queue is not None:
            return
        self._queue = asyncio.Queue(self.queue_size)
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="taomm-batch")
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self.workers)]

    async def close(self) -> None:
        """Stop the workers; calls still queued get ``Overloaded``."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._queue is not None:
            while not self._queue.empty():
                call = self._queue.get_nowait()
                if not call.future.done():
                    call.future.set_exception(Overloaded("the server is shutting down"))
            self._queue = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def submit(self, item: T) -> R:
        """``item``'s result, once its batch has run; ``Overloaded`` when the queue is full."""
        if self._queue is None:
            await self.start()
        assert self._queue is not None
        call = _Call(item, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(call)
        except asyncio.QueueFull:
            self.stats.refused += 1
            raise Overloaded(f"{self.queue_size} requests are already waiting") from None
        return await call.future

    async def _collect(self) -> list[_Call]:
        """The first waiting call and those that arrive within the window, up to max_batch."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.window
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [call for call in await self._collect() if not call.future.done()]  # done: caller gone
            if not batch:
                continue
            self.stats.batches += 1
            self.stats.calls += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, [c.item for c in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch gave {len(results)} results for {len(batch)} items")
            except Exception as exc:  # a failure of the whole batch reaches every caller
                results = [exc] * len(batch)
            self.stats.busy_s += time.perf_counter() - started
            for call, result in zip(batch, results, strict=True):
                if call.future.done():
                    continue
                if isinstance(result, BaseException):
                    call.future.set_exception(result)
                else:
                    call.future.set_result(result)
