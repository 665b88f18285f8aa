"""Prometheus metrics of the domain: LLM calls (recorded by the generation pipeline, per stage)
and training progress (recorded when the API receives a trainer's step event).

Every metric lives in the process that does the work and is served by that process: the API at
``/metrics``, each worker on ``CGD_WORKER_METRICS_PORT`` (``serve_worker_metrics``). Recording is
a few dictionary look-ups and additions: nothing here touches the database or the network.
docs/observability.md lists the metrics and what each label holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

LLM_REQUESTS = Counter(
    "cgd_llm_requests_total",
    "LLM calls by endpoint, model, stage and outcome (ok, or the error kind that failed the call)",
    ["endpoint", "model", "stage", "outcome"],
)
LLM_DURATION = Histogram(
    "cgd_llm_request_duration_seconds",
    "Seconds one LLM call took, retries and backoff included",
    ["endpoint", "model", "stage"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600),
)
LLM_TOKENS = Counter(
    "cgd_llm_tokens_total",
    "Tokens reported by LLM servers, by kind (prompt, completion) and outcome (kept: the answer "
    "used; retried: an attempt answered and retried; failed: the attempts of a call that failed)",
    ["endpoint", "model", "stage", "kind", "outcome"],
)
LLM_RETRIES = Counter(
    "cgd_llm_retries_total",
    "LLM attempts retried, by reason (the error kind, or truncated: retried with a larger budget)",
    ["endpoint", "model", "stage", "reason"],
)
LLM_INFLIGHT = Gauge(
    "cgd_llm_inflight",
    "LLM calls in progress (waiting for a slot, on the wire or backing off before a retry)",
    ["endpoint", "model"],
)
LLM_SERVER_REQUESTS = Gauge(
    "cgd_llm_server_requests",
    "Requests a vLLM server reports in its own /metrics, as the adaptive bound last read them",
    ["server", "state"],
)
TRAINING_LOSS = Gauge("cgd_training_loss", "Latest training loss of a running run", ["run"])
TRAINING_TOKENS_PER_S = Gauge(
    "cgd_training_tokens_per_second", "Latest training throughput of a running run", ["run"]
)


TOKEN_OUTCOMES = ("kept", "retried", "failed")


@dataclass
class CallRecord:
    """What ``llm_call`` records when the call ends; the caller fills in tokens per outcome
    (``{"kept": (prompt, completion), ...}``) and the reasons of the retried attempts."""

    tokens: dict[str, tuple[int, int]] = field(default_factory=dict)
    retries: list[str] = field(default_factory=list)


def endpoint_label(base_url: str) -> str:
    """``host[:port]/path``: never credentials or a query string (see safe_url). The model is
    its own label."""
    from cgd.llm_client import safe_url

    return safe_url(base_url)


@asynccontextmanager
async def llm_call(endpoint: str, model: str, stage: str) -> AsyncIterator[CallRecord]:
    """Time one LLM call; the outcome is ``ok`` or the ``kind`` of the exception that ended it
    (``LLMError.kind``; ``cancelled`` when the task was cancelled)."""
    record = CallRecord()
    inflight = LLM_INFLIGHT.labels(endpoint, model)
    inflight.inc()
    started = time.monotonic()
    outcome = "ok"
    try:
        yield record
    except BaseException as exc:
        outcome = getattr(exc, "kind", None) or (
            "cancelled" if isinstance(exc, asyncio.CancelledError) else "error"
        )
        raise
    finally:
        inflight.dec()
        LLM_DURATION.labels(endpoint, model, stage).observe(time.monotonic() - started)
        LLM_REQUESTS.labels(endpoint, model, stage, outcome).inc()
        for kept, (prompt, completion) in record.tokens.items():
            if prompt:
                LLM_TOKENS.labels(endpoint, model, stage, "prompt", kept).inc(prompt)
            if completion:
                LLM_TOKENS.labels(endpoint, model, stage, "completion", kept).inc(completion)
        for reason in record.retries:
            LLM_RETRIES.labels(endpoint, model, stage, reason).inc()


def training_step(run_id: str, data: dict[str, Any]) -> None:
    loss = data.get("loss")
    if isinstance(loss, int | float):
        TRAINING_LOSS.labels(run_id).set(loss)
    tps = data.get("tokens_per_s")
    if isinstance(tps, int | float):
        TRAINING_TOKENS_PER_S.labels(run_id).set(tps)


def training_finished(run_id: str) -> None:
    """Drop a finished run's series: one per run ever would grow without bound."""
    for gauge in (TRAINING_LOSS, TRAINING_TOKENS_PER_S):
        with suppress(KeyError):
            gauge.remove(run_id)


def serve_worker_metrics(port: int | None, addr: str = "127.0.0.1") -> bool:
    """Serve this process's metrics on ``addr``:``port`` (a thread); ``None`` or 0: off. They
    name endpoint URLs and models, so loopback unless the operator sets an address."""
    if not port:
        return False
    start_http_server(port, addr=addr)
    return True
