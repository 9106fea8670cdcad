"""Server-side batching: concurrent requests for one version are merged into one model call.

The model's cost is mostly per call, not per row, so merging is the main throughput lever.
Semantics follow TF Serving's batch scheduler: a batch closes when it holds
``max_batch_size`` rows or when its oldest request has waited ``batch_timeout_micros``
(0: take whatever is queued as soon as a batch thread is free); at most
``max_batch_size * max_enqueued_batches`` rows wait, beyond that requests get UNAVAILABLE.
A request larger than ``max_batch_size`` runs as a batch of its own. When a merged batch
fails, its requests are re-run one by one: a request the model refuses fails alone.

Where the model holds the GIL for its whole call (sklearn's compiled form: short NumPy
and ctypes steps) and one batch thread is configured, a worker thread buys no parallelism,
only a hand-off and a wake-up each way; such batches run on the event loop itself while
recent calls took under ``INLINE_CALL_SECONDS`` (a slow call goes back to the thread, so
the loop is never held long). Requests arriving meanwhile wait in gRPC's own queues and
form the next batch, as they would while a worker thread ran it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import grpc
import numpy as np

from service.model_server.config import BatchingOptions
from service.model_server.errors import ServingError, busy

Columns = dict[str, np.ndarray]
QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"
# The longest recent model call (moving average) still run on the event loop; see above.
INLINE_CALL_SECONDS = 0.002


@dataclass
class Task:
    inputs: Columns
    rows: int
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


def settle(task: Task, error: Exception) -> None:
    if not task.future.done():
        task.future.set_exception(error)


def merge(tasks: list[Task]) -> Columns:
    if len(tasks) == 1:
        return tasks[0].inputs
    return {name: np.concatenate([t.inputs[name] for t in tasks]) for name in tasks[0].inputs}


class Batcher:
    """One queue and ``num_batch_threads`` workers for one (version, signature)."""

    def __init__(
        self,
        run: Callable[[Columns], Columns],
        options: BatchingOptions,
        executor: Executor,
        on_batch: Callable[[int, int, float], None],
        on_queue: Callable[[int], None],
        holds_gil: bool = False,
    ):
        self.run = run
        self.options = options
        self.executor = executor
        self.on_batch = on_batch
        self.on_queue = on_queue
        # Whether batches may run on the loop (see the module's docstring), and for how
        # long recent calls took.
        self.inline = holds_gil and options.num_batch_threads == 1
        self.recent_seconds = 0.0
        self.queue: deque[Task] = deque()
        self.queued_rows = 0
        self.wakeup = asyncio.Event()
        self.workers = [
            asyncio.get_running_loop().create_task(self._work())
            for _ in range(options.num_batch_threads)
        ]

    async def submit(self, inputs: Columns, rows: int) -> Columns:
        if self.queued_rows + rows > self.options.max_queued_rows and self.queue:
            raise busy(QUEUE_FULL, grpc.StatusCode.UNAVAILABLE)
        task = Task(inputs, rows, asyncio.get_running_loop().create_future())
        self.queue.append(task)
        self.queued_rows += rows
        self.on_queue(self.queued_rows)
        self.wakeup.set()
        return await task.future

    def _take(self) -> list[Task]:
        taken = [self.queue.popleft()]
        rows = taken[0].rows
        while self.queue and rows + self.queue[0].rows <= self.options.max_batch_size:
            task = self.queue.popleft()
            taken.append(task)
            rows += task.rows
        self.queued_rows -= rows
        self.on_queue(self.queued_rows)
        return taken

    async def _wait_for_batch(self) -> None:
        """Wait until a batch is due: queue non-empty, then full or timed out."""
        while not self.queue:
            self.wakeup.clear()
            await self.wakeup.wait()
        timeout = self.options.batch_timeout_micros / 1e6
        if timeout <= 0:
            return
        deadline = self.queue[0].enqueued + timeout
        while self.queue and self.queued_rows < self.options.max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.wakeup.clear()
            try:
                await asyncio.wait_for(self.wakeup.wait(), remaining)
            except TimeoutError:
                return

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_batch()
            if not self.queue:
                continue
            tasks = self._take()
            tasks = [t for t in tasks if not t.future.cancelled()]
            if not tasks:
                continue
            rows = sum(t.rows for t in tasks)
            started = time.perf_counter()
            try:
                outputs = await self._call(loop, merge(tasks))
            except Exception as exc:
                if len(tasks) == 1:
                    settle(tasks[0], exc)
                else:
                    await self._run_alone(tasks)
                continue
            seconds = time.perf_counter() - started
            self.recent_seconds += (seconds - self.recent_seconds) / 4
            self.on_batch(len(tasks), rows, seconds)
            offset = 0
            for task in tasks:
                if not task.future.done():
                    task.future.set_result(
                        {k: v[offset : offset + task.rows] for k, v in outputs.items()}
                    )
                offset += task.rows

    async def _call(self, loop: asyncio.AbstractEventLoop, inputs: Columns) -> Columns:
        if self.inline and self.recent_seconds < INLINE_CALL_SECONDS:
            return self.run(inputs)
        return await loop.run_in_executor(self.executor, self.run, inputs)

    async def _run_alone(self, tasks: list[Task]) -> None:
        """A merged batch failed: run its requests one by one, so a request the model
        refuses fails alone and its batch-mates still get their answers."""
        loop = asyncio.get_running_loop()
        for task in tasks:
            if task.future.done():
                continue
            started = time.perf_counter()
            try:
                outputs = await loop.run_in_executor(self.executor, self.run, task.inputs)
            except Exception as exc:
                settle(task, exc)
                continue
            self.on_batch(1, task.rows, time.perf_counter() - started)
            if not task.future.done():
                task.future.set_result(outputs)

    @property
    def idle(self) -> bool:
        return not self.queue

    async def close(self) -> None:
        for worker in self.workers:
            worker.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        while self.queue:
            task = self.queue.popleft()
            if not task.future.done():
                task.future.set_exception(
                    ServingError(grpc.StatusCode.UNAVAILABLE, "model version was unloaded")
                )
