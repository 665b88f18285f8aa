"""Adaptive in-flight bound per endpoint, shared by every worker process that calls it.

A user does not know a server's capacity (vLLM's batch size differs per model and GPU; a hosted
API limits requests per minute), so the bound is learnt while the job runs:

* **Grow** while the server keeps up: the limit doubles per window until the first sign of
  congestion (slow start), then grows by about sqrt(limit) per window, and by 1 once it is near
  the limit where the server last pushed back (so a bounded queue is probed gently).
* **Shrink** on 429/503, timeouts and dropped connections (×``backoff``), and when latency rises
  above the no-load baseline: requests then queue at the server, and with latency ∝ in-flight /
  capacity the bound that just fills the server is ``limit / (latency / baseline)``; a small
  waiting queue (``queue_target``) is kept on top so no slot idles between requests.
* **vLLM's /metrics**, when served, raises a fresh endpoint's start from 32 to 128 and replaces
  the latency rule (a real engine's latency also
  rises with batch size, long before anything queues): ``num_requests_waiting`` is held near
  ``queue_target`` and the bound stops growing once the KV cache is nearly full (preemptions).

Each decision uses only latencies of requests *started after* the previous change, so one burst
of congestion is never counted twice. Decisions are arithmetic on a shared *global* limit held
by a :class:`LimitStore`: Redis when the workers have one (every process that currently sends to
the endpoint registers itself and takes ``global / live processes`` as its share, and a decrease
is applied at most once per cooldown however many processes saw the same burst), or a local
dict (embedded quickstart, tests). ``ceiling`` (``CGD_MAX_INFLIGHT_PER_ENDPOINT``) bounds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import logging
import math
import os
import re
import statistics
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("cgd.concurrency")


@dataclass(frozen=True)
class ControlConfig:
    ceiling: int = 1024  # CGD_MAX_INFLIGHT_PER_ENDPOINT
    initial: int = 32  # where a fresh endpoint starts (slow start doubles it per window)
    # Where it starts once the endpoint turns out to serve vLLM's /metrics: an overshoot only
    # waits in vLLM's queue (no 429s) and its gauges show it at once, so start nearer a typical
    # engine's batch (vLLM's default max_num_seqs is 256 or more).
    initial_vllm: int = 128
    floor: int = 1
    latency_tolerance: float = 1.5  # window median / baseline above this means queueing
    queue_target: int = 4  # requests kept waiting at the server
    backoff: float = 0.7  # multiplicative decrease on overload
    min_window_s: float = 0.2
    min_samples: int = 8
    kv_cache_high: float = 0.95  # stop growing above this KV-cache use
    sync_s: float = 0.5  # how often a process re-reads the shared limit
    live_ttl_s: float = 3.0  # a process with no demand for this long stops taking a share


class LimitStore(Protocol):
    """Where the global limit of each endpoint lives."""

    async def apply(
        self, key: str, mul: float, add: float, decrease: bool, cfg: ControlConfig
    ) -> float: ...

    async def sync(
        self, key: str, proc: str, active: bool, cfg: ControlConfig
    ) -> tuple[float, int]:
        """Register ``proc`` (when active); return (global limit, live processes)."""
        ...


def _clamp(value: float, cfg: ControlConfig) -> float:
    return max(float(cfg.floor), min(float(cfg.ceiling), value))


class LocalLimitStore:
    """One process: the global limit is this process's limit."""

    def __init__(self) -> None:
        self._limits: dict[str, float] = {}
        self._last_decrease: dict[str, float] = {}

    async def apply(
        self, key: str, mul: float, add: float, decrease: bool, cfg: ControlConfig
    ) -> float:
        limit = self._limits.get(key, float(cfg.initial))
        now = time.monotonic()
        if decrease and now - self._last_decrease.get(key, -1e9) < cfg.min_window_s:
            return limit
        if decrease:
            self._last_decrease[key] = now
        self._limits[key] = limit = _clamp(limit * mul + add, cfg)
        return limit

    async def sync(
        self, key: str, proc: str, active: bool, cfg: ControlConfig
    ) -> tuple[float, int]:
        return _clamp(self._limits.get(key, float(cfg.initial)), cfg), 1


# KEYS: limit hash, cooldown key. ARGV: mul, add, decrease, floor, ceiling, initial, cooldown ms.
_APPLY = """
local limit = tonumber(redis.call('HGET', KEYS[1], 'limit') or ARGV[6])
if ARGV[3] == '1' then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[7]) then return tostring(limit) end
end
limit = limit * tonumber(ARGV[1]) + tonumber(ARGV[2])
limit = math.max(tonumber(ARGV[4]), math.min(tonumber(ARGV[5]), limit))
redis.call('HSET', KEYS[1], 'limit', tostring(limit))
redis.call('EXPIRE', KEYS[1], 86400)
return tostring(limit)
"""


class RedisLimitStore:
    """Shared by every process on the same Redis (the worker's broker)."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis  # only workers with a Redis broker need it

        self._url = url
        self._aioredis = aioredis
        self._clients: dict[int, Any] = {}  # one client per event loop (asyncio objects)

    def _redis(self) -> Any:
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            client = self._clients[loop_id] = self._aioredis.Redis.from_url(self._url)
        return client

    @staticmethod
    def _names(key: str) -> tuple[str, str, str]:
        h = hashlib.sha256(key.encode()).hexdigest()[:16]  # the URL may hold credentials
        return f"cgd:conc:{h}", f"cgd:conc:{h}:cool", f"cgd:conc:{h}:live"

    async def apply(
        self, key: str, mul: float, add: float, decrease: bool, cfg: ControlConfig
    ) -> float:
        limit_key, cool_key, _ = self._names(key)
        cooldown_ms = max(1, int(cfg.min_window_s * 1000))
        args = [mul, add, int(decrease), cfg.floor, cfg.ceiling, cfg.initial, cooldown_ms]
        value = await self._redis().eval(_APPLY, 2, limit_key, cool_key, *args)
        return float(value)

    async def sync(
        self, key: str, proc: str, active: bool, cfg: ControlConfig
    ) -> tuple[float, int]:
        limit_key, _, live_key = self._names(key)
        now = time.time()
        pipe = self._redis().pipeline(transaction=False)
        if active:
            pipe.zadd(live_key, {proc: now})
            pipe.expire(live_key, 3600)
        pipe.zremrangebyscore(live_key, "-inf", now - cfg.live_ttl_s)
        pipe.zcard(live_key)
        pipe.hget(limit_key, "limit")
        *_, live, raw = await pipe.execute()
        limit = float(raw) if raw is not None else float(cfg.initial)
        return _clamp(limit, cfg), max(1, int(live))

    async def aclose(self) -> None:
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
        self._clients.clear()


@dataclass
class ServerMetrics:
    """What vLLM's /metrics says about the engine (summed over models)."""

    running: float
    waiting: float
    kv_cache: float | None
    at: float = field(default_factory=time.monotonic)
    # Prompt + generated tokens the engine has processed (its counters): the hang watch's sign
    # of life. None when the page has no such counters.
    tokens: float | None = None


_TOKENS_RE = re.compile(
    r"^vllm:(?:prompt|generation)_tokens_total(?:\{[^}]*\})?\s+([0-9.eE+-]+)\s*$", re.MULTILINE
)
_METRIC_RE = re.compile(
    r"^vllm:(num_requests_running|num_requests_waiting|gpu_cache_usage_perc|kv_cache_usage_perc)"
    r"(?:\{[^}]*\})?\s+([0-9.eE+-]+)\s*$",
    re.MULTILINE,
)


def _export_server_metrics(url: str, m: ServerMetrics) -> None:
    """What the server said, on the worker's own metrics (host:port only: no credentials)."""
    from urllib.parse import urlsplit

    from cgd.metrics import LLM_SERVER_REQUESTS

    parts = urlsplit(url)
    server = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    LLM_SERVER_REQUESTS.labels(server, "running").set(m.running)
    LLM_SERVER_REQUESTS.labels(server, "waiting").set(m.waiting)


def parse_vllm_metrics(text: str) -> ServerMetrics | None:
    """The gauges the controller needs from a Prometheus text page; None if it is not vLLM's."""
    seen: dict[str, float] = {}
    for name, value in _METRIC_RE.findall(text):
        try:
            number = float(value)
        except ValueError:
            continue
        if name in ("gpu_cache_usage_perc", "kv_cache_usage_perc"):
            seen["kv"] = max(seen.get("kv", 0.0), number)
        else:
            seen[name] = seen.get(name, 0.0) + number
    if "num_requests_waiting" not in seen or "num_requests_running" not in seen:
        return None
    tokens: float | None = None
    for value in _TOKENS_RE.findall(text):
        try:
            tokens = (tokens or 0.0) + float(value)
        except ValueError:
            continue
    return ServerMetrics(
        seen["num_requests_running"], seen["num_requests_waiting"], seen.get("kv"), tokens=tokens
    )


Fetch = Callable[[str], Awaitable[str | None]]
# A waiting call's place in the window's queue: lower first, then arrival order.
Priority = tuple[float, ...]


class AdaptiveLimit:
    """This process's in-flight window for one endpoint (FIFO waiters, a limit that moves)."""

    def __init__(
        self,
        key: str,
        cfg: ControlConfig,
        store: LimitStore,
        proc: str | None = None,
        adaptive: bool = True,
    ) -> None:
        self.key = key
        self.cfg = cfg
        self.store = store
        self.adaptive = adaptive
        self.proc = proc or f"{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.global_limit = float(cfg.initial if adaptive else cfg.ceiling)
        self.live = 1
        self._admitted: int | None = None  # what the server still admits after a 429, until
        # the next decision
        self._overload_at = 0.0
        self.limit = self._share()
        self.inflight = 0
        self.metrics: ServerMetrics | None = None
        self.metrics_url: str | None = None
        # Waiters by (priority, arrival): the pipeline passes its chunk's start, so the oldest
        # chunk finishes first and chunks end one after another, not all at once (a chunk's
        # last calls leave the server idle unless another chunk has calls waiting behind them).
        self._waiters: list[tuple[Priority, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._samples: list[float] = []
        self._overload = False
        self._peak = 0
        self._changed_at = time.monotonic()
        self._window_start = self._changed_at
        self._baseline: float | None = None  # no-load latency estimate
        self._slow_start = True
        self._pushback_limit: float | None = None  # where the server last pushed back
        self._calm = 0  # windows since the server last pushed back
        self._slow_windows = 0
        self._last_demand = 0.0
        self._deciding = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.decisions: deque[tuple[float, str, float]] = deque(maxlen=200)  # for tests/logs

    # -- the window -----------------------------------------------------------------------------

    def _share(self) -> int:
        share = max(self.cfg.floor, math.ceil(self.global_limit / self.live))
        return share if self._admitted is None else min(share, self._admitted)

    async def acquire(self, priority: Priority = ()) -> float:
        """Wait for room (lower ``priority`` first, then arrival order); returns the monotonic
        start time to pass to :meth:`record`."""
        self._last_demand = time.monotonic()
        while self._waiters and self._waiters[0][2].done():
            heapq.heappop(self._waiters)  # cancelled while waiting
        if self.inflight >= self.limit or self._waiters:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (priority, next(self._seq), fut))
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self.inflight -= 1  # we were handed a slot we will not use: pass it on
                    self._wake()
                raise  # a cancelled future left in the heap is skipped when it comes up
        else:
            self.inflight += 1
        self._peak = max(self._peak, self.inflight)
        return time.monotonic()

    def release(self) -> None:
        self.inflight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.inflight < self.limit:
            fut = heapq.heappop(self._waiters)[2]
            if not fut.done():
                self.inflight += 1  # the slot is handed over, not raced for
                fut.set_result(None)

    def _set_global(self, value: float, live: int | None = None) -> None:
        self.global_limit = value
        if live is not None:
            self.live = live
        self.limit = self._share()
        self._wake()

    # -- observations ---------------------------------------------------------------------------

    def record(self, started: float, latency_s: float | None, overload: bool) -> None:
        """One finished attempt, called *before* :meth:`release`: its latency (success) or
        whether the server pushed back."""
        if not self.adaptive:
            return
        if overload:
            # A 429 frees its slot at once: the window shrinks to what is still in flight (this
            # attempt excluded), or the next waiter would go straight into the same full queue,
            # and the next, until the decision lands. Held until that decision, whatever the
            # shared limit says meanwhile: what is left in flight is what the server admits.
            left = min(self._admitted or self.inflight, self.inflight - 1)
            self._admitted = max(self.cfg.floor, left)
            self.limit = min(self.limit, self._admitted)
            if started < self._changed_at:
                return
            if not self._overload:
                self._overload_at = time.monotonic()
            self._overload = True
        elif started < self._changed_at:
            return  # sent under an older limit: says nothing about the current one
        elif latency_s is not None:
            self._samples.append(latency_s)
        now = time.monotonic()
        baseline = self._baseline or 0.0
        # A burst of 429s is over within a moment (each one shrinks the window by one): decide
        # once it has settled, on what the server then admits.
        settled = self._overload and now - self._overload_at >= self.cfg.min_window_s
        long_enough = settled or now - self._window_start >= max(self.cfg.min_window_s, baseline)
        enough = self._overload or len(self._samples) >= min(self.cfg.min_samples, self.limit)
        if long_enough and enough and not self._deciding:
            self._deciding = True
            self._spawn(self._decide())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _plan(self) -> tuple[str, float, float, bool] | None:
        """(reason, mul, add, is_decrease) for the shared limit, or None to hold."""
        cfg = self.cfg
        saturated = self._peak >= 0.9 * self.limit  # demand reached our share in this window
        median = statistics.median(self._samples) if self._samples else None
        baseline = self._baseline
        if median is not None:
            # The lowest latency seen, drifting slowly towards a sustained level: a server (or a
            # busy client host) that is slower for good is not mistaken for a growing queue.
            if baseline is None or median < baseline:
                self._baseline = median
            elif not self._slow_start:
                self._baseline = baseline + (median - baseline) * 0.02
        # What this endpoint really has in flight (all processes), vs the bound.
        used = min(1.0, self._peak * self.live / max(1.0, self.global_limit))
        self._calm += 1
        if self._overload:
            probe = self._calm > 1 and self._pushback_limit is not None
            self._calm = 0
            self._slow_start = False
            if probe and self.global_limit >= self._pushback_limit - 1:  # type: ignore[operator]
                # A probe past the known level failed: step back below it, no further.
                return "probe", max(cfg.backoff, 1.0 - 2.0 / self.global_limit), 0.0, True
            # The server admits what was left in flight once its 429s came back (every 429
            # shrank the window to that): remember the lowest such level (a later calm probe
            # past it raises it again).
            assert self._admitted is not None  # set by the record() that set _overload
            level = float(self._admitted * self.live)
            self._pushback_limit = min(self._pushback_limit or level, level)
            used = min(1.0, level / max(1.0, self.global_limit))
            return "overload", cfg.backoff * used, 0.0, True
        rising = median is not None and baseline is not None and median > baseline * 1.2
        if self._slow_start and rising:  # latency starts to rise: doubling ends here
            self._slow_start = False
            return None
        m = self.metrics
        # Read since the last change had time to show at the server (half a no-load latency).
        if m is not None and m.at > self._changed_at + 0.5 * (baseline or 0.0):
            waiting = m.waiting
            if waiting > cfg.queue_target:
                # Keep what runs plus the target queue: scale the global bound by that fraction.
                busy = m.running + waiting
                self._slow_start = False
                return "waiting", (m.running + cfg.queue_target) / busy, 0.0, True
            if m.kv_cache is not None and m.kv_cache >= cfg.kv_cache_high:
                return None
            return self._grow() if saturated else None
        slow = (
            median is not None
            and baseline is not None
            and median > baseline * cfg.latency_tolerance
        )
        self._slow_windows = self._slow_windows + 1 if slow else 0
        # Two slow windows in a row: one alone is as likely a busy client host as a queue.
        if slow and self._slow_windows >= 2:
            assert median is not None and baseline is not None
            self._slow_start = False
            self._pushback_limit = self._peak * self.live
            return "latency", max(0.25, used * baseline / median), float(cfg.queue_target), True
        if slow:
            return None  # one slow window: neither grow nor shrink yet
        return self._grow() if saturated else None

    def _grow(self) -> tuple[str, float, float, bool] | None:
        if self._slow_start:
            return "slow start", 2.0, 0.0, False
        step = max(1.0, math.sqrt(self.global_limit))
        if self._pushback_limit is not None:
            self._pushback_limit = max(self._pushback_limit, self.global_limit)  # held calmly
            # Approach the level where the server last pushed back in halving steps; past it,
            # probe by 1 only now and then (each probe may cost a 429).
            gap = self._pushback_limit - 1 - self.global_limit
            if gap < 1 and self._calm % 8:
                return None
            step = max(1.0, min(step, gap / 2))
        return "grow", 1.0, step, False

    async def _decide(self) -> None:
        try:
            plan = self._plan()
            self._new_window()
            if plan is not None:
                await self._apply(*plan)
        finally:
            self._deciding = False

    def _new_window(self) -> None:
        self._samples, self._overload, self._peak = [], False, self.inflight
        self._admitted = None
        self._window_start = time.monotonic()

    async def _apply(self, reason: str, mul: float, add: float, decrease: bool) -> None:
        """Move the shared limit; later windows judge only calls sent after this."""
        try:
            value = await self.store.apply(self.key, mul, add, decrease, self.cfg)
        except Exception as exc:  # shared store down: adapt locally until it is back
            log.warning("concurrency store unavailable (%s); adapting locally", exc)
            value = _clamp(self.global_limit * mul + add, self.cfg)
        self._changed_at = time.monotonic()
        self.decisions.append((self._changed_at, reason, value))
        log.debug("in-flight bound for endpoint: %s → %.1f", reason, value)
        self._set_global(value)

    # -- background: shared limit, server metrics -------------------------------------------------

    def start(self, fetch: Fetch | None) -> None:
        """Start the sync (and, given ``fetch`` and a URL, the metrics) loop in this loop."""
        if self._tasks or not self.adaptive:
            return
        self._spawn(self._sync_loop())
        if fetch is not None and self.metrics_url:
            self._spawn(self._metrics_loop(fetch, self.metrics_url))

    def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        for *_, fut in self._waiters:
            fut.cancel()
        self._waiters.clear()
        self.inflight = 0

    def _active(self) -> bool:
        return self.inflight > 0 or time.monotonic() - self._last_demand < self.cfg.live_ttl_s

    async def _sync_loop(self) -> None:
        while True:
            try:
                value, live = await self.store.sync(self.key, self.proc, self._active(), self.cfg)
                self._set_global(value, live)
            except Exception as exc:
                log.warning("concurrency store unavailable (%s)", exc)
            await asyncio.sleep(self.cfg.sync_s)

    async def _start_for_vllm(self) -> None:
        """Nothing learnt yet and the server is vLLM: jump to ``initial_vllm``."""
        gap = self.cfg.initial_vllm - self.global_limit
        if self._slow_start and self._pushback_limit is None and gap > 0:
            self._samples, self._peak = [], self.inflight
            self._window_start = time.monotonic()
            await self._apply("vllm", 1.0, gap, False)

    async def _metrics_loop(self, fetch: Fetch, url: str) -> None:
        misses, served = 0, False
        while served or misses < 3:  # three misses before any page: no vLLM metrics here
            if self._active():
                text = await fetch(url)  # None: no answer (busy, down), which proves nothing
                parsed = parse_vllm_metrics(text) if text else None
                if parsed is not None:
                    if not served:
                        await self._start_for_vllm()
                    served, self.metrics = True, parsed
                    _export_server_metrics(url, parsed)
                elif text is not None:
                    misses += 1
            await asyncio.sleep(self.cfg.sync_s / 2)
        self.metrics = None
