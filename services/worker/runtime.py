"""Per-process runtime of a worker: one event loop thread, one HTTP client, one verifier pool,
one database engine — created lazily in the process that uses them (after any fork)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from cgd.db.engine import make_engine, make_sessionmaker, session_scope
from cgd.generation.breaker import Breaker, TeamLimits
from cgd.generation.concurrency import LimitStore, LocalLimitStore, RedisLimitStore
from cgd.generation.hangs import HangConfig, HangWatch
from cgd.generation.pipeline import PipelineDeps, UnwrittenGate
from cgd.llm_client import LLMClient
from cgd.outbound import allowlist_guard
from cgd.settings import Settings
from cgd.verify import VerifierPool

T = TypeVar("T")


class WorkerRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.effective_database_url, pool_size=8)
        self.sessionmaker = make_sessionmaker(self.engine)
        self.loop = asyncio.new_event_loop()
        # Database work of the pipeline runs here, off the event loop.
        self.db_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="cgd-db")
        self.loop.set_default_executor(self.db_pool)
        self._thread = threading.Thread(target=self.loop.run_forever, name="cgd-loop", daemon=True)
        self._thread.start()
        # The worker's own allow-list, checked before every request (retries, metrics, probes):
        # a job accepted under an older list (retry-failed, a redelivered chunk) can't reach
        # what it now forbids.
        self.guard = allowlist_guard(settings.endpoint_allowlist)
        self.client = LLMClient(
            max_inflight_per_endpoint=settings.max_inflight_per_endpoint,
            timeout_s=settings.llm_timeout_s,
            max_attempts=settings.llm_max_attempts,
            backoff_base_s=settings.llm_backoff_base_s,
            backoff_max_s=settings.llm_backoff_max_s,
            url_guard=self.guard,
            adaptive=settings.adaptive_concurrency,
            limit_store=limit_store(settings),
            max_response_bytes=settings.max_response_bytes,
        )
        self.breaker = Breaker(settings.breaker_failures, settings.preflight_timeout_s, self.guard)
        self.hangs = HangWatch(
            self.client,
            self.breaker,
            HangConfig(
                suspect_s=settings.hang_suspect_s,
                probe_timeout_s=settings.hang_probe_timeout_s,
                probes=settings.hang_probes,
                after_s=settings.hang_after_s,
            ),
        )
        self._hang_task = asyncio.run_coroutine_threadsafe(self.hangs.run(), self.loop)
        # Chunks that gave their slot away while they wait on a silent server (bounded).
        self._stalled = 0
        self._stalled_lock = threading.Lock()
        per_team = settings.team_max_inflight_per_endpoint
        self.team_limits = TeamLimits(per_team) if per_team else None
        self.verifier = VerifierPool(
            processes=settings.verify_processes, timeout_s=settings.verify_timeout_s
        )
        self.owner_prefix = f"{socket.gethostname()}:{os.getpid()}"
        self.unwritten = UnwrittenGate()  # created here, used only on self.loop

    def run_db_sync(self, fn: Callable[[Session], T]) -> T:
        with session_scope(self.sessionmaker) as session:
            return fn(session)

    async def run_db(self, fn: Callable[[Session], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, self.run_db_sync, fn)

    def take_stalled_slot(self) -> bool:
        """Room for one more chunk waiting without a slot? (taken if so)"""
        with self._stalled_lock:
            if self._stalled >= self.settings.max_stalled_chunks:
                return False
            self._stalled += 1
            return True

    def release_stalled_slot(self) -> None:
        with self._stalled_lock:
            self._stalled -= 1

    def deps(self, task_id: str, on_stall: Callable[[], bool] | None = None) -> PipelineDeps:
        s = self.settings
        return PipelineDeps(
            client=self.client,
            run_db=self.run_db,
            owner=f"{self.owner_prefix}:{task_id}"[:100],
            verifier=self.verifier,
            lease_s=s.lease_s,
            heartbeat_s=s.heartbeat_s,
            breaker=self.breaker,
            team_limits=self.team_limits,
            team_max_running_chunks=s.team_max_running_chunks,
            batch_poll_s=s.batch_poll_s,
            unwritten=self.unwritten,
            stall_yield_s=s.stall_yield_s,
            on_stall=on_stall,
        )

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        """Run a coroutine on the process loop from a task thread; cancel it past the limit."""
        return self.submit(coro, timeout_s).result()

    def submit(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> Future[T]:
        """Start a coroutine on the process loop; cancel it past the limit."""
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout_s), self.loop)

    def close(self) -> None:
        self._hang_task.cancel()
        asyncio.run_coroutine_threadsafe(self.client.aclose(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.verifier.close()
        self.db_pool.shutdown(wait=False)
        self.engine.dispose()


def limit_store(settings: Settings) -> LimitStore:
    """Shared through the broker's Redis, so every worker respects one bound per endpoint; the
    embedded quickstart (no Redis) adapts per process."""
    url = settings.broker_url
    if url and url.startswith(("redis://", "rediss://")):
        return RedisLimitStore(url)
    return LocalLimitStore()


_runtime: WorkerRuntime | None = None
_lock = threading.Lock()


def get_runtime(settings: Settings) -> WorkerRuntime:
    global _runtime
    with _lock:
        if _runtime is None or _runtime.settings is not settings:
            _runtime = WorkerRuntime(settings)
        return _runtime
