"""Parent side of the verifier pool: :class:`VerifierPool`, its dispatcher thread and workers."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cgd.verify.checks import (
    REASON_TIMEOUT,
    REASON_WORKER_DIED,
    TEST_KINDS,
    Verdict,
    _MathJob,
    _prepare,
)
from cgd.verify.worker import _MSG_READY, _worker_main

logger = logging.getLogger("cgd.verify")


class _Batch:
    """Results of one verify_many call; resolved by the dispatcher thread."""

    def __init__(self, size: int) -> None:
        self.results: list[Verdict | None] = [None] * size
        self.remaining = size
        self.future: concurrent.futures.Future[list[Verdict]] = concurrent.futures.Future()

    def resolve(self, index: int, verdict: Verdict) -> None:
        self.results[index] = verdict
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():  # done: cancelled by an awaiter
            self.future.set_result(list(self.results))  # type: ignore[arg-type]

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


@dataclass
class _Task:
    batch: _Batch
    index: int
    job: _MathJob

    def resolve(self, correct: bool | None, reason: str) -> None:
        self.batch.resolve(
            index=self.index,
            verdict=Verdict(correct, self.job.extracted, self.job.reference, reason),
        )


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    ready: bool = False
    inflight: collections.deque[_Task] = field(default_factory=collections.deque)
    # When the job at the head of `inflight` started (as far as the parent can tell).
    job_started: float = 0.0


def _default_processes() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(2, cpus))


class VerifierPool:
    """Verifies answers; math-verify runs in worker processes under a hard per-item timeout.

    Cheap checks run inline in the caller; the rest is queued to ``processes`` workers (a
    ``spawn`` context by default, so a pool can be created from any thread, e.g. a Celery
    worker's). A job running longer than ``timeout_s`` gets ``Verdict(correct=None,
    reason="timeout")``: usually from the worker's own timer, and if that cannot fire (C code),
    the parent kills the worker and starts a replacement. Thread-safe; see :meth:`averify_many`
    for asyncio.
    """

    def __init__(
        self,
        processes: int | None = None,
        timeout_s: float = 5.0,
        *,
        chunk_size: int = 16,
        mp_context: str = "spawn",
        enable_test_kinds: bool = False,
        max_start_failures: int = 3,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.processes = processes or _default_processes()
        self.timeout_s = timeout_s
        # The worker's soft timer fires first so that normally nobody is killed; the parent's
        # deadline (timeout_s) is the backstop for code that ignores signals.
        self._soft_timeout_s = timeout_s * 0.8
        self._chunk_size = max(1, chunk_size)
        self._ctx = multiprocessing.get_context(mp_context)
        self._enable_test_kinds = enable_test_kinds
        self._max_start_failures = max_start_failures
        self._start_failures = 0
        self._inbox: collections.deque[list[_Task]] = collections.deque()
        self._inbox_lock = threading.Lock()
        self._pending: collections.deque[_Task] = collections.deque()
        self._workers: list[_Worker] = []
        self._closed = False  # close() was called
        self._accepting = True  # False once the dispatcher stops; guarded by _inbox_lock
        self._broken: BaseException | None = None
        self._all_ready = threading.Event()
        self.kills = 0  # workers killed for exceeding the hard timeout (for logs and tests)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        for _ in range(self.processes):
            self._workers.append(self._spawn())
        self._thread = threading.Thread(target=self._run, name="verifier-pool", daemon=True)
        self._thread.start()

    # -- public API ---------------------------------------------------------------------------

    def verify(self, kind: str, response: str | None, reference: Any) -> Verdict:
        """Verify one response (blocks until decided, at most about ``timeout_s`` of work)."""
        return self.verify_many([(kind, response, reference)])[0]

    def verify_many(self, items: Sequence[tuple[str, str | None, Any]]) -> list[Verdict]:
        """Verify many (kind, response, reference) items; results in input order."""
        return self._submit(items).result()

    async def averify_many(self, items: Sequence[tuple[str, str | None, Any]]) -> list[Verdict]:
        """Like :meth:`verify_many`, without blocking the running event loop."""
        loop = asyncio.get_running_loop()
        if len(items) > 32:
            # The inline cheap checks are pure Python; keep long batches off the loop.
            future = await loop.run_in_executor(None, self._submit, items)
        else:
            future = self._submit(items)
        return await asyncio.wrap_future(future)

    async def averify(self, kind: str, response: str | None, reference: Any) -> Verdict:
        """Like :meth:`verify`, for asyncio."""
        return (await self.averify_many([(kind, response, reference)]))[0]

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until every worker has started (imports done); True if they have."""
        self._all_ready.wait(timeout)
        # The event is also set when the dispatcher stops, to release waiters promptly.
        return self._all_ready.is_set() and self._broken is None and not self._closed

    def worker_pids(self) -> list[int]:
        """PIDs of the current worker processes (for monitoring and benchmarks)."""
        return [w.process.pid for w in list(self._workers) if w.process.pid is not None]

    def close(self) -> None:
        """Stop the workers; unfinished submissions fail with RuntimeError."""
        if self._closed:
            return
        self._closed = True
        self._wake()
        self._thread.join()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- submission (caller threads) ----------------------------------------------------------

    def _submit(
        self, items: Sequence[tuple[str, str | None, Any]]
    ) -> concurrent.futures.Future[list[Verdict]]:
        if self._closed:
            raise RuntimeError("VerifierPool is closed")
        batch = _Batch(len(items))
        tasks: list[_Task] = []
        for index, (kind, response, reference) in enumerate(items):
            prepared = self._prepare(kind, response, reference)
            if isinstance(prepared, Verdict):
                batch.resolve(index, prepared)
            else:
                tasks.append(_Task(batch, index, prepared))
        if len(items) == 0:
            batch.future.set_result([])
        if tasks:
            with self._inbox_lock:
                accepted = self._accepting
                if accepted:
                    self._inbox.append(tasks)
            if not accepted:
                batch.fail(self._stopped_error())
            else:
                self._wake()
        return batch.future

    def _stopped_error(self) -> RuntimeError:
        if self._broken is not None:
            return RuntimeError(f"VerifierPool is broken: {self._broken!r}")
        return RuntimeError("VerifierPool is closed")

    def _prepare(self, kind: str, response: str | None, reference: Any) -> Verdict | _MathJob:
        if kind in TEST_KINDS and self._enable_test_kinds:
            return _MathJob(kind, str(response), str(reference))
        return _prepare(kind, response, reference)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # full pipe: a wake-up is pending
            os.write(self._wake_w, b"x")

    # -- dispatcher thread --------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=_worker_main,
            args=(child_conn, self._soft_timeout_s, self._enable_test_kinds),
            name="cgd-verifier",
            daemon=True,  # never outlive the parent
        )
        process.start()
        child_conn.close()
        return _Worker(process=process, conn=parent_conn)

    def _run(self) -> None:
        try:
            while not self._closed:
                self._take_inbox()
                self._assign()
                self._wait_and_handle()
                self._enforce_deadlines()
        except BaseException as exc:  # a bug here must not leave callers waiting forever
            logger.exception("verifier pool dispatcher crashed")
            self._broken = exc
        finally:
            self._shutdown()

    def _take_inbox(self) -> None:
        with self._inbox_lock:
            while self._inbox:
                self._pending.extend(self._inbox.popleft())

    def _assign(self) -> None:
        idle = [w for w in self._workers if w.ready and not w.inflight]
        for position, worker in enumerate(idle):
            # Drop jobs nobody waits for any more (an awaiting coroutine was cancelled).
            while self._pending and self._pending[0].batch.future.done():
                self._pending.popleft()
            if not self._pending:
                return
            # Spread what is pending over the idle workers, in chunks to amortise IPC.
            share = math.ceil(len(self._pending) / (len(idle) - position))
            size = min(self._chunk_size, max(1, share))
            chunk = [self._pending.popleft() for _ in range(min(size, len(self._pending)))]
            self._send(worker, chunk)

    def _send(self, worker: _Worker, chunk: list[_Task]) -> None:
        worker.inflight.extend(chunk)
        worker.job_started = time.monotonic()
        try:
            worker.conn.send([tuple(task.job) for task in chunk])
        except OSError:  # it died while idle: nothing of the chunk ran, so requeue it all
            logger.error("verifier worker pid %s is gone; replacing it", worker.process.pid)
            self._replace(worker)

    def _next_wait(self) -> float | None:
        busy = [w.job_started for w in self._workers if w.inflight]
        if not busy:
            return None
        return max(0.0, min(busy) + self.timeout_s - time.monotonic())

    def _wait_and_handle(self) -> None:
        by_conn = {w.conn: w for w in self._workers}
        by_sentinel = {w.process.sentinel: w for w in self._workers}
        waitables: list[Any] = [self._wake_r, *by_conn, *by_sentinel]
        for ready in multiprocessing.connection.wait(waitables, timeout=self._next_wait()):
            if ready == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 4096):
                        pass
            elif ready in by_conn:
                self._drain(by_conn[ready])
            elif ready in by_sentinel and by_sentinel[ready] in self._workers:
                worker = by_sentinel[ready]
                self._drain(worker)
                if worker in self._workers:
                    self._on_worker_death(worker)

    def _drain(self, worker: _Worker) -> None:
        """Handle every message the worker has sent so far."""
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                self._on_message(worker, message)
        except (EOFError, OSError):
            if worker in self._workers:
                self._on_worker_death(worker)

    def _on_message(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        if message[0] == _MSG_READY:
            worker.ready = True
            self._start_failures = 0
            if all(w.ready for w in self._workers):
                self._all_ready.set()
            return
        _, correct, reason = message
        task = worker.inflight.popleft()
        task.resolve(correct, reason)
        worker.job_started = time.monotonic()  # the next job in the chunk starts now

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            if not worker.inflight or now - worker.job_started < self.timeout_s:
                continue
            self._drain(worker)  # results may be waiting unread: never kill a finished job
            if worker not in self._workers or not worker.inflight:
                continue
            if time.monotonic() - worker.job_started >= self.timeout_s:
                self._kill_stuck(worker)

    def _kill_stuck(self, worker: _Worker) -> None:
        stuck = worker.inflight.popleft()
        logger.warning(
            "verification exceeded %.1fs hard timeout; killing worker pid %s (%r vs %r)",
            self.timeout_s,
            worker.process.pid,
            stuck.job.extracted[:80],
            stuck.job.reference[:80],
        )
        self.kills += 1
        stuck.resolve(None, REASON_TIMEOUT)
        self._replace(worker)

    def _on_worker_death(self, worker: _Worker) -> None:
        if not worker.ready:
            self._start_failures += 1
            logger.error("verifier worker pid %s died during start-up", worker.process.pid)
        if worker.inflight:
            crashed = worker.inflight.popleft()
            logger.error(
                "verifier worker pid %s died on %r", worker.process.pid, crashed.job.extracted[:80]
            )
            crashed.resolve(None, REASON_WORKER_DIED)
        if self._start_failures >= self._max_start_failures:
            raise RuntimeError(f"verifier workers failed to start {self._start_failures} times")
        self._replace(worker)

    def _replace(self, worker: _Worker) -> None:
        """Kill ``worker``, requeue its unstarted jobs first in line, start a new worker."""
        self._workers.remove(worker)
        self._pending.extendleft(reversed(worker.inflight))
        worker.inflight.clear()
        self._stop_process(worker, graceful=False)
        self._all_ready.clear()
        self._workers.append(self._spawn())

    @staticmethod
    def _stop_process(worker: _Worker, *, graceful: bool) -> None:
        # A worker still importing would only read the stop message once ready: kill it.
        if graceful and worker.ready:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
            worker.process.join(timeout=1.0)
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5.0)
        worker.conn.close()

    def _shutdown(self) -> None:
        with self._inbox_lock:
            self._accepting = False
        self._take_inbox()
        error = self._stopped_error()
        for worker in self._workers:
            for task in worker.inflight:
                task.batch.fail(error)
        for task in self._pending:
            task.batch.fail(error)
        self._pending.clear()
        for worker in self._workers:
            self._stop_process(worker, graceful=True)
        self._workers.clear()
        self._all_ready.set()
