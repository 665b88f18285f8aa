"""State and statistics: slots, the fault RNG, latency draws, counters for /sim/stats."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cgd.simulator.answers import Answerer, load_references
from cgd.simulator.config import SimConfig


@dataclass
class SimStats:
    requests_total: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_stage_model: Counter[tuple[str, str]] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    finish_reasons: Counter[str] = field(default_factory=Counter)
    tokens: Counter[tuple[str, str]] = field(default_factory=Counter)  # (model, kind)
    running: int = 0
    queued: int = 0
    inflight: int = 0
    max_running: int = 0
    max_inflight: int = 0
    duplicates: int = 0
    # The largest request seen: body bytes and characters of all message contents (what the
    # worker's CGD_MAX_PROMPT_CHARS caps).
    max_request_bytes: int = 0
    max_prompt_chars: int = 0
    duplicate_examples: list[dict[str, str]] = field(default_factory=list)
    seen: set[bytes] = field(default_factory=set)
    recent: deque[dict[str, Any]] = field(default_factory=deque)

    def as_json(self) -> dict[str, Any]:
        by_stage: dict[str, dict[str, int]] = {}
        for (stage, model), n in self.by_stage_model.items():
            by_stage.setdefault(stage, {})[model] = n
        tokens: dict[str, dict[str, int]] = {}
        for (model, kind), n in self.tokens.items():
            tokens.setdefault(model, {"prompt": 0, "completion": 0})[kind] = n
        return {
            "requests_total": self.requests_total,
            # Tokens of every answer sent (200), per model: prompt and completion.
            "tokens": tokens,
            "by_status": dict(self.by_status),
            "by_stage_model": by_stage,
            "faults": dict(self.faults),
            "finish_reasons": dict(self.finish_reasons),
            "running": self.running,
            "queued": self.queued,
            "inflight": self.inflight,
            "max_running": self.max_running,
            "max_inflight": self.max_inflight,
            "duplicates": self.duplicates,
            "max_request_bytes": self.max_request_bytes,
            "max_prompt_chars": self.max_prompt_chars,
            "duplicate_examples": self.duplicate_examples,
            "recent_requests": list(self.recent),
        }


class SimState:
    """Per-app state: config (replaceable at runtime), slots, fault RNG, statistics."""

    def __init__(self, config: SimConfig) -> None:
        self.startup_config = config
        self.config = config
        self.answerer = Answerer(load_references(config.datasets))
        self.slots = asyncio.Semaphore(config.slots)  # FIFO waiters, like vLLM's queue
        self.rng = random.Random(config.seed)
        self.latency_rng = random.Random(config.seed + 1)
        self.stats = self._fresh_stats()
        self.stopping = asyncio.Event()  # set on shutdown so hung requests end
        self.ids = itertools.count(1)
        self.started = time.time()
        self.rate_window_start, self.rate_count = -1e9, 0  # the rpm window
        self.files: dict[str, bytes] = {}  # Batch API files (input and output)
        self.batches: dict[str, dict[str, Any]] = {}
        self.background: set[asyncio.Task[None]] = set()
        # Engine work done, for vLLM-like token counters on /metrics: slot-seconds of finished
        # requests, plus the start times of running ones (a hung request holds no slot and so
        # makes no progress, as with a wedged engine).
        self.engine_s = 0.0
        self.running_started: dict[object, float] = {}

    def engine_seconds(self) -> float:
        now = time.monotonic()
        return self.engine_s + sum(now - t for t in self.running_started.values())

    def take_rate(self, cfg: SimConfig) -> dict[str, str] | None:
        """Spend one request of the rpm window; the x-ratelimit-* headers of the answer.
        ``remaining-requests`` is -1 when the request is over the limit (not spent). The window
        is fixed and the reset is when it starts afresh, as OpenAI's headers describe."""
        if cfg.rpm is None:
            return None
        now = time.monotonic()
        if now >= self.rate_window_start + cfg.rate_window_s:
            self.rate_window_start, self.rate_count = now, 0
        over = self.rate_count >= cfg.rpm
        if not over:
            self.rate_count += 1
        reset = self.rate_window_start + cfg.rate_window_s - now
        return {
            "x-ratelimit-limit-requests": str(cfg.rpm),
            "x-ratelimit-remaining-requests": "-1" if over else str(cfg.rpm - self.rate_count),
            "x-ratelimit-reset-requests": f"{max(0.0, reset):.3f}s",
        }

    def _fresh_stats(self, live: SimStats | None = None) -> SimStats:
        stats = SimStats(recent=deque(maxlen=self.config.record_last))
        if live is not None:
            # Requests still being served keep counting after a reset.
            stats.running, stats.queued, stats.inflight = live.running, live.queued, live.inflight
            stats.max_running, stats.max_inflight = live.running, live.inflight
        return stats

    def reset(self, restore_config: bool) -> None:
        if restore_config:
            self.config = self.startup_config
        self.rng = random.Random(self.config.seed)
        self.stats = self._fresh_stats(self.stats)

    def latency(self) -> float:
        """This request's generation time. Jitter keeps requests that started together from
        all finishing together, as real generation lengths vary."""
        base, jitter = self.config.latency_s, self.config.latency_jitter
        if not jitter:
            return base
        return base * (1.0 + jitter * (2.0 * self.latency_rng.random() - 1.0))

    def draw_fault(self, stage: str, model: str) -> str | None:
        cfg = self.config
        if cfg.fault_stages and stage not in cfg.fault_stages:
            return None
        if cfg.fault_models and model not in cfg.fault_models:
            return None
        rates = (
            ("429", cfg.rate_429),
            ("500", cfg.rate_500),
            ("hang", cfg.rate_hang),
            ("drop", cfg.rate_drop),
            ("truncate", cfg.rate_truncate),
        )
        if not any(rate for _, rate in rates):
            return None
        r = self.rng.random()
        for name, rate in rates:
            if r < rate:
                return name
            r -= rate
        return None


STATE: web.AppKey[SimState] = web.AppKey("cgd_sim_state", SimState)
