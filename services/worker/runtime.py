"""Per-process runtime of a worker: one event loop thread, one HTTP client, one verifier pool,
one database engine — created lazily in the process that uses them (after any fork)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from cgd.db.engine import make_engine, make_sessionmaker, session_scope
from cgd.generation.breaker import Breaker, TeamLimits
from cgd.generation.concurrency import LimitStore, LocalLimitStore, RedisLimitStore
from cgd.generation.pipeline import PipelineDeps, UnwrittenGate
from cgd.llm_client import LLMClient
from cgd.security.urls import check_url
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
        self.client = LLMClient(
            max_inflight_per_endpoint=settings.max_inflight_per_endpoint,
            timeout_s=settings.llm_timeout_s,
            max_attempts=settings.llm_max_attempts,
            backoff_base_s=settings.llm_backoff_base_s,
            backoff_max_s=settings.llm_backoff_max_s,
            # The worker's own allow-list, checked before every attempt: a job accepted under an
            # older list (retry-failed, a redelivered chunk) can't reach what it now forbids.
            url_guard=lambda url: check_url(url, settings.endpoint_allowlist),
            adaptive=settings.adaptive_concurrency,
            limit_store=limit_store(settings),
        )
        self.breaker = Breaker(settings.breaker_failures, settings.preflight_timeout_s)
        self.client.observer = self.breaker.record
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

    def deps(self, task_id: str) -> PipelineDeps:
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
        )

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        """Run a coroutine on the process loop from a task thread; cancel it past the limit."""
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout_s), self.loop)
        return future.result()

    def close(self) -> None:
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
