"""Adaptive batching: concurrent requests for one model become one predict call.

Every admitted request is a `Job` in a FIFO queue. A dispatcher task takes the oldest job plus
every queued job for the same model object and options, up to `max_batch_rows`, predicts them
together (in the predict thread pool, or inline when the server is otherwise idle) and hands
each job exactly its own rows, in order. No timer holds a lone request back: a batch is whatever
queued up while the previous predict ran, plus (for at most `max_batch_wait_ms`) requests
already being decoded. A forest costs little more for 100 rows than for 1, so under load this
multiplies throughput; at concurrency 1 it adds next to nothing.

A job keeps the model it was validated against: after a hot reload, queued jobs still run on the
old model object and new ones on the new, never mixed in one batch. If a batch predict raises, its
jobs are retried one by one, so one bad request cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from mlops.config import ServeConfig
from mlops.serving.errors import DeadlineExceeded, NotReady, PredictionFailed
from mlops.serving.metrics import Metrics
from mlops.serving.model import Options, Prediction, ServedModel
from mlops.serving.validate import Table

log = logging.getLogger(__name__)

# Largest batch predicted on the event loop itself (see Batcher._call): for our models, far
# quicker than a health probe may wait.
_INLINE_MAX_ROWS = 256


@dataclass(eq=False)
class Job:
    model: ServedModel
    table: Table
    options: Options
    future: asyncio.Future[Prediction]
    enqueued: float  # time.perf_counter(): uvloop's loop.time() counts whole milliseconds
    inline: bool = True  # may be predicted on the event loop when the server is idle


class Batcher:
    def __init__(self, metrics: Metrics, config: ServeConfig) -> None:
        self.metrics = metrics
        self.max_rows = config.max_batch_rows
        self.max_wait_s = config.max_batch_wait_ms / 1000
        self.max_queue = config.max_queue_depth
        self.wait_budget_s = config.request_timeout_s / 2
        self.admitted = 0  # prediction requests in the server, from arrival to answer
        self.rows_in_flight = 0  # rows of those, once decoded
        self.rows_per_s = math.inf  # the model's recent speed: a moving average over batches
        self._queued_rows = 0
        self.arriving = 0  # requests admitted and still being read or decoded
        self._queue: deque[Job] = deque()
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(config.predict_threads)
        self._executor = ThreadPoolExecutor(config.predict_threads, thread_name_prefix="predict")
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = 0  # batches being predicted
        self._last_batch_jobs = 0

    def start(self) -> None:
        self.spawn(self._dispatch())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._queue:
            _fail(self._queue.popleft(), NotReady("server is shutting down"))
        self._executor.shutdown(wait=True)

    async def predict(
        self,
        model: ServedModel,
        table: Table,
        options: Options,
        deadline: float,
        inline: bool = True,
    ) -> Prediction:
        """Queue `table` for `model` and wait for its rows' predictions until `deadline`.
        `inline=False`: never on the event loop (see `_call`)."""
        loop = asyncio.get_running_loop()
        job = Job(model, table, options, loop.create_future(), time.perf_counter(), inline)
        self._queue.append(job)
        self._wakeup.set()
        self.rows_in_flight += table.n_rows
        self._queued_rows += table.n_rows
        late = DeadlineExceeded("the request took longer than its time budget")
        timer = loop.call_later(max(0.0, deadline - loop.time()), _fail, job, late)
        try:
            return await job.future
        finally:
            timer.cancel()
            self.rows_in_flight -= table.n_rows

    def full(self) -> bool:
        """Whether a prediction request arriving now is turned away (before its body is read):
        `max_queue_depth` requests are in the server already, or the rows in it would take the
        model more than half the time budget, at its recent speed, to predict."""
        late = self.rows_in_flight > self.rows_per_s * self.wait_budget_s
        return self.admitted >= self.max_queue or late

    def _measure_speed(self, rows: int, seconds: float) -> None:
        speed = rows / max(seconds, 1e-6)
        known = math.isfinite(self.rows_per_s)
        self.rows_per_s = 0.8 * self.rows_per_s + 0.2 * speed if known else speed

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run `coroutine` as a task the batcher holds, and cancels when it stops."""
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dispatch(self) -> None:
        while True:
            await self._slots.acquire()
            batch = await self._next_batch()
            self.spawn(self._run(batch))

    async def _next_batch(self) -> list[Job]:
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self.arriving and self.max_wait_s > 0:
                await self._linger()
            elif self._calls_trickling() and self.max_wait_s > 0:
                await self._await_calls()
            batch = self._take()
            if batch:
                return batch

    async def _linger(self) -> None:
        """Let requests being decoded right now join the batch (bounded by max_batch_wait_ms)."""
        until = time.perf_counter() + self.max_wait_s
        while self.arriving and time.perf_counter() < until and self._queued_rows < self.max_rows:
            await asyncio.sleep(0)

    def _calls_trickling(self) -> bool:
        """gRPC calls (jobs that may not run inline) reach the queue one per turn of the loop,
        a thread hop apart (see `_call`): while the last batch had company, more are coming."""
        return not self._queue[0].inline and self._last_batch_jobs > 1

    async def _await_calls(self) -> None:
        """Let gRPC calls join the batch for max_batch_wait_ms (or until it is full), asleep
        between arrivals: spinning would take the CPU the calls need to arrive."""
        until = time.perf_counter() + self.max_wait_s
        while self._queued_rows < self.max_rows:
            remaining = until - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    def _take(self) -> list[Job]:
        taken: list[Job] = []
        kept: deque[Job] = deque()
        rows = 0
        while self._queue:
            job = self._queue.popleft()
            if job.future.done():  # timed out or the client went away
                continue
            if taken and not (
                _same_batch(taken[0], job) and rows + job.table.n_rows <= self.max_rows
            ):
                kept.append(job)
                continue
            taken.append(job)
            rows += job.table.n_rows
        self._queue = kept
        self._queued_rows = sum(job.table.n_rows for job in kept)
        self._last_batch_jobs = len(taken)
        return taken

    async def _run(self, batch: list[Job]) -> None:
        self._running += 1
        try:
            now = time.perf_counter()
            self.metrics.observe_batch(batch[0].model, [now - job.enqueued for job in batch])
            if not await self._predict(batch) and len(batch) > 1:
                for job in batch:  # one bad request must not fail its neighbours: one by one
                    await self._predict([job])
        finally:
            self._running -= 1
            self._slots.release()

    async def _predict(self, batch: list[Job]) -> bool:
        """Predict `batch` and answer its jobs; False if the model raised. A lone job's error is
        logged with its trace and answered without."""
        started = time.perf_counter()
        try:
            parts = await self._call(batch)
        except Exception:
            if len(batch) == 1:  # the model's own error goes to the log; the answer gets neither
                log.exception("prediction failed for %s", batch[0].model.ref.uri)
                _fail(batch[0], PredictionFailed("the model failed to predict these rows"))
            return False
        seconds = time.perf_counter() - started
        self.metrics.observe_predict(batch[0].model, seconds, parts)
        self._measure_speed(sum(job.table.n_rows for job in batch), seconds)
        for job, part in zip(batch, parts, strict=True):
            if not job.future.done():
                job.future.set_result(part)
        # After the answers: set_result queued their tasks first, and they write them.
        tables = [job.table for job in batch]
        asyncio.get_running_loop().call_soon(
            self.metrics.drift_window.observe, batch[0].model, tables, parts
        )
        return True

    async def _call(self, batch: list[Job]) -> list[Prediction]:
        """In the predict thread, so the event loop keeps reading requests meanwhile; but a
        small batch for one of our models (whose cost we know) with nothing else queued,
        arriving or running is predicted right here: with nothing to overlap, the two thread
        wake-ups would be pure delay. A generic model may be slow: it always runs in the thread.
        So do gRPC requests: grpc.aio accepts one call per turn of the loop, so under load the
        server looks idle to each of them, and inline predicts would make every batch one
        request long (seen: 1.0 requests per batch at concurrency 64, against 40 over HTTP)."""
        rows = sum(job.table.n_rows for job in batch)
        idle = not self._queue and not self.arriving and self._running == 1
        if idle and batch[0].model.fast_path and rows <= _INLINE_MAX_ROWS and batch[0].inline:
            return _predict_batch(batch)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _predict_batch, batch)


def _same_batch(head: Job, job: Job) -> bool:
    return job.model is head.model and (job.options is head.options or job.options == head.options)


def _predict_batch(batch: list[Job]) -> list[Prediction]:
    """Runs in the predict thread: one predict call, then each job's own slice of the result."""
    head = batch[0]
    prediction = head.model.predict([job.table for job in batch], head.options)
    if len(batch) == 1:
        return [prediction]
    sizes = [job.table.n_rows for job in batch]
    values, probabilities = prediction.values, prediction.probabilities
    if not hasattr(values, "__len__") or len(values) != sum(sizes):
        # Retried request by request, as any failing batch is.
        raise ValueError(f"model did not return one prediction per row ({sum(sizes)})")
    parts = []
    start = 0
    for size in sizes:
        end = start + size
        rows = probabilities[start:end] if probabilities is not None else None
        parts.append(Prediction(values[start:end], rows))
        start = end
    return parts


def _fail(job: Job, error: Exception) -> None:
    if not job.future.done():
        job.future.set_exception(error)
