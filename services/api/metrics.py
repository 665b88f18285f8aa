"""Prometheus metrics of the API: HTTP requests (a pure ASGI middleware; no
BaseHTTPMiddleware, it buffers bodies), rows ingested, and at scrape time the items of active
jobs by state and the broker's queue depths (``StateCollector``). The domain's metrics (LLM
calls, training) are defined in ``cgd.metrics`` and land in the same registry."""

from __future__ import annotations

import contextlib
import hmac
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cgd.db.models import ITEM_STATES, Job
from cgd.errors import CgdError, Unauthorized
from cgd.settings import Settings
from cgd.tasks import QUEUES

REQUESTS = Counter("cgd_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "cgd_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
)
DATASET_ROWS = Counter("cgd_dataset_rows_ingested_total", "Dataset rows committed")


class MetricsMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(scope["method"], route).observe(time.perf_counter() - start)


class MetricsForbidden(CgdError):
    """Not the metrics token: /metrics needs CGD_METRICS_TOKEN (team API keys do not grant it)."""

    status_code = 403


def check_scraper(settings: Settings, authorization: str | None) -> None:
    """Only a scraper holding ``CGD_METRICS_TOKEN`` reads /metrics: the series name every team's
    run ids and queue depths. With the setting unset, nobody does (never open by default)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized({"reason": "/metrics needs Authorization: Bearer <CGD_METRICS_TOKEN>"})
    expected = settings.metrics_token
    if expected is None or not hmac.compare_digest(
        token.strip().encode(), expected.get_secret_value().encode()
    ):
        raise MetricsForbidden()


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST


# Scrapes come every 15-60 s from each Prometheus; the counts behind them need a scan of the
# items of active jobs, so one scan serves every scrape within this many seconds.
STATE_CACHE_S = 10.0
# kombu's Redis transport keeps a queue's messages of priority p in "<queue>\x06\x16<p>".
_PRIORITY_SUFFIXES = ("",) + tuple(f"\x06\x16{p}" for p in range(1, 10))


class StateCollector(Collector):
    """``cgd_job_items{state}`` (items of jobs not finished or cancelled) and
    ``cgd_queue_depth{queue}`` (messages waiting in Redis), cached for ``STATE_CACHE_S``."""

    def __init__(self, factory: sessionmaker[Session], redis: Any | None) -> None:
        self.factory = factory
        self.redis = redis
        self._lock = threading.Lock()
        self._at = -STATE_CACHE_S
        self._items: dict[str, int] = {}
        self._queues: dict[str, int] = {}

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._at < STATE_CACHE_S:
                return
            self._items = self._count_items()
            self._queues = self._queue_depths()
            self._at = time.monotonic()

    def _count_items(self) -> dict[str, int]:
        from cgd.jobs.ops import state_groups

        counts = dict.fromkeys(ITEM_STATES, 0)
        active = select(Job).where(Job.finished_at.is_(None), Job.cancelled_at.is_(None))
        try:
            with self.factory() as session:
                jobs = list(session.scalars(active))
                groups = state_groups(session, jobs)  # maintained counts, not an item scan
        except Exception:  # the database is down: say nothing rather than fail the scrape
            return {}
        for job in jobs:
            seen = 0
            for state, _kind, _truncated, n, *_ in groups[job.id]:
                counts[state] += n
                seen += n
            counts["pending"] += job.total_items - seen  # chunks not yet run have no item rows
        return counts

    def _queue_depths(self) -> dict[str, int]:
        if self.redis is None:
            return {}
        try:
            pipe = self.redis.pipeline()
            for queue in QUEUES:
                for suffix in _PRIORITY_SUFFIXES:
                    pipe.llen(queue + suffix)
            lengths = pipe.execute()
        except Exception:
            return {}
        n = len(_PRIORITY_SUFFIXES)
        return {q: int(sum(lengths[i * n : (i + 1) * n])) for i, q in enumerate(QUEUES)}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self._refresh()
        items = GaugeMetricFamily(
            "cgd_job_items", "Items of active (unfinished) jobs by state", labels=["state"]
        )
        for state, n in self._items.items():
            items.add_metric([state], n)
        yield items
        queues = GaugeMetricFamily(
            "cgd_queue_depth", "Task messages waiting in the broker", labels=["queue"]
        )
        for queue, n in self._queues.items():
            queues.add_metric([queue], n)
        yield queues


def install_state_collector(factory: sessionmaker[Session], redis: Any | None) -> StateCollector:
    collector = StateCollector(factory, redis)
    REGISTRY.register(collector)
    return collector


def remove_collector(collector: Collector) -> None:
    with contextlib.suppress(KeyError):
        REGISTRY.unregister(collector)
