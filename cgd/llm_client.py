"""Async client for OpenAI-compatible chat servers (vLLM, SGLang, hosted APIs).

Built on aiohttp rather than httpx/openai: at 100+ requests in flight httpx spends most of its time
in its own pool bookkeeping (docs/performance.md, encode/httpx#3215), while one aiohttp session
keeps up with a 512 calls/s server using a fraction of a core.

What the generation worker relies on:

* **Explicit sampling.** :class:`EndpointConfig` holds every sampling parameter with an explicit
  default and sends all of them in every request, so a stored call says exactly what was asked
  for and never depends on a server's defaults. :meth:`EndpointConfig.request_params` is that dict.
* **Adaptive concurrency.** vLLM has no admission control and a hosted API limits requests per
  minute; an adaptive in-flight bound per endpoint (base URL), shared by every worker process
  through Redis, learns what the server sustains (:mod:`cgd.generation.concurrency`);
  ``max_inflight_per_endpoint`` is its ceiling. ``rate_limit`` and the ``x-ratelimit-*`` headers
  pace requests and tokens per minute (:mod:`cgd.generation.ratelimit`).
* **Retries.** Timeouts, connection errors, 429 (waiting at least ``Retry-After``) and 5xx are
  retried by the project's one retry policy (:mod:`cgd.retry`); other 4xx fail at once.
* **Hosted APIs.** ``token_param`` names the completion budget (``max_completion_tokens`` for
  OpenAI's reasoning models), ``omit`` drops parameters a server rejects, and a separate
  ``reasoning_content`` is returned apart from the answer (never part of it).
* **No truncated answers.** ``finish_reason == "length"`` is never returned: it raises
  :class:`LLMError` (``kind="truncated"``) or, with ``truncation=Truncation.retry_larger``, is
  retried once with a larger ``max_tokens``.
* **No secrets in output.** The API key is a ``SecretStr``: it is absent from reprs, logs,
  recorded parameters and error messages.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import orjson
from yarl import URL

from cgd.enums import Truncation
from cgd.generation.concurrency import (
    AdaptiveLimit,
    ControlConfig,
    LimitStore,
    LocalLimitStore,
    Priority,
)
from cgd.generation.ratelimit import RateGate
from cgd.llm.endpoint import EndpointConfig, RateLimit, safe_url
from cgd.outbound import (
    DEFAULT_MAX_RESPONSE_BYTES,
    AsyncOutbound,
    OutboundRefused,
    Reply,
    ResponseTooLarge,
    UrlGuard,
    describe,
)
from cgd.retry import RetryPolicy, parse_retry_after

__all__ = [
    "CallResult",
    "EndpointConfig",
    "LLMClient",
    "LLMError",
    "RateLimit",
    "parse_retry_after",
    "safe_url",
]

log = logging.getLogger("cgd.llm_client")

# The reasons of the attempts retried within the current call (an error kind, or "truncated"
# for an answer retried with a larger budget): a caller that sets a list here reads them after
# ``chat`` returns or raises. A context variable, not a field threaded through every retry
# helper: it follows the call's task, so concurrent calls never share one.
RETRY_REASONS: ContextVar[list[str] | None] = ContextVar("retry_reasons", default=None)


def _note_retry(reason: str) -> None:
    reasons = RETRY_REASONS.get()
    if reasons is not None:
        reasons.append(reason)


Message = dict[str, str]
ErrorKind = Literal[
    "timeout", "rate_limited", "server_error", "client_error", "connection", "truncated",
    "bad_response",
]  # fmt: skip
TruncationPolicy = Truncation


@dataclass(frozen=True, slots=True)
class CallResult:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float  # the successful attempt only
    total_s: float  # first attempt to answer, retries and backoff waits included
    attempts: int
    request_params: dict[str, Any]  # what the successful attempt sent, minus messages
    # (prompt, completion) tokens the server processed for this call: every answered attempt,
    # a truncated one retried with a larger budget included (what a team pays for).
    billed: tuple[int, int]
    model: str | None = None  # as reported by the server
    response_id: str | None = None
    reasoning: str | None = None  # a reasoning model's reasoning_content: never the answer


class LLMError(Exception):
    """A call that produced no usable answer; ``kind`` says why (see ErrorKind)."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        attempts: int,
        status: int | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> None:
        super().__init__(f"{kind} after {attempts} attempt(s): {message}")
        self.kind = kind
        self.message = message
        self.attempts = attempts
        self.status = status
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens


class _AttemptError(Exception):
    """One failed attempt; ``retryable`` and ``retry_after_s`` steer the retry loop."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        retryable: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s


@dataclass
class EndpointStats:
    inflight: int = 0
    max_inflight: int = 0
    calls: int = 0
    attempts: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    # Monotonic times the hang watch reads: the last HTTP answer of any status, and when the
    # current busy period began (in-flight went from 0 to 1).
    answered_at: float = 0.0
    busy_since: float = 0.0


@dataclass
class Server:
    """One endpoint's state in this process, as the hang watch sees it."""

    base_url: str
    limiter: AdaptiveLimit
    gate: RateGate
    stats: EndpointStats


@dataclass(frozen=True, slots=True)
class _Response:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    model: str | None
    response_id: str | None
    reasoning: str | None = None


@dataclass(frozen=True, slots=True)
class _Outcome:
    response: _Response
    latency_s: float
    attempts: int  # counted over the whole call, truncation retry included
    params: dict[str, Any]


class LLMClient:
    """Shared async client: one aiohttp session, a bounded in-flight window per endpoint.

    Create it anywhere; the session is created lazily on first use inside the running event loop
    and the client stays bound to that loop. Call :meth:`aclose` (or use ``async with``) when done.
    """

    def __init__(
        self,
        max_inflight_per_endpoint: int = 1024,
        timeout_s: float = 600.0,
        connect_timeout_s: float = 10.0,
        max_attempts: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        retry_after_max_s: float = 300.0,
        truncation: TruncationPolicy = Truncation.fail,
        truncation_max_tokens: int = 16384,
        rng: random.Random | None = None,
        url_guard: UrlGuard | None = None,
        adaptive: bool = True,
        limit_store: LimitStore | None = None,
        control: ControlConfig | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if max_inflight_per_endpoint < 1 or max_attempts < 1:
            raise ValueError("max_inflight_per_endpoint and max_attempts must be >= 1")
        if truncation not in tuple(Truncation):
            raise ValueError(f"unknown truncation policy {truncation!r}")
        self.max_inflight_per_endpoint = max_inflight_per_endpoint
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_attempts = max_attempts
        self.retry = RetryPolicy(
            max_attempts=max_attempts,
            backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s,
            retry_after_max_s=retry_after_max_s,
            rng=rng or random.Random(),
        )
        self.truncation = truncation
        self.truncation_max_tokens = truncation_max_tokens
        self._rng = rng or random.Random()
        # Every request (each attempt, the metrics page, Batch API calls) goes through the
        # guarded outbound client: the URL checked each time, no redirects, bounded answers.
        self.outbound = AsyncOutbound(url_guard, max_response_bytes)
        self.adaptive = adaptive
        # The fixed bound is the ceiling the adaptive one moves under.
        base = control or ControlConfig()
        self.control = ControlConfig(
            **{**base.__dict__, "ceiling": max_inflight_per_endpoint,
               "initial": min(base.initial, max_inflight_per_endpoint)}
        )  # fmt: skip
        self.limit_store: LimitStore = limit_store or LocalLimitStore()
        self._endpoints: dict[str, Server] = {}
        # Told the outcome of every attempt: (endpoint, error kind or None, message, attempt
        # number within its call). A call may bring its own (the worker's per-team breaker).
        self.observer: Observer | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session; the client may then be used again, in any event loop."""
        for ep in self._endpoints.values():
            # asyncio objects belong to one loop: the next loop starts them afresh (the learnt
            # limit and the stats are kept).
            ep.limiter.stop()
        await self.outbound.aclose()

    def _ensure_session(self) -> aiohttp.ClientSession:
        return self.outbound.session()

    def _endpoint(self, endpoint: EndpointConfig) -> Server:
        state = self._endpoints.get(endpoint.key)
        if state is None:
            limiter = AdaptiveLimit(
                endpoint.key, self.control, self.limit_store, adaptive=self.adaptive
            )
            metrics_url = _metrics_url(endpoint.base_url)
            # The metrics page is read only where the operator allows it (it lies outside the
            # usual /v1 prefix): otherwise the window adapts from latencies alone.
            if metrics_url is not None and self.outbound.allowed(metrics_url):
                limiter.metrics_url = metrics_url
            # Always a gate: x-ratelimit-* headers are honoured even with no rate_limit set.
            rl = endpoint.rate_limit or RateLimit()
            gate = RateGate(rl.rpm, rl.tpm)
            state = self._endpoints[endpoint.key] = Server(
                endpoint.base_url, limiter, gate, EndpointStats()
            )
        state.limiter.start(self._fetch_metrics)
        return state

    async def _fetch_metrics(self, url: str) -> str | None:
        """vLLM's Prometheus page; "" when the server has none (a hosted API), None when it did
        not answer."""
        try:
            reply = await self.outbound.request(
                "GET", url, timeout=aiohttp.ClientTimeout(total=5.0), max_bytes=_METRICS_MAX_BYTES
            )
        except (OutboundRefused, ResponseTooLarge):
            return ""
        except (aiohttp.ClientError, TimeoutError):
            return None
        return reply.body.decode("utf-8", "replace") if reply.status == 200 else ""

    def servers(self) -> dict[str, Server]:
        """Every endpoint this client has called, by key."""
        return dict(self._endpoints)

    def stats(self) -> dict[str, EndpointStats]:
        """Per-endpoint counters (current and peak in-flight, attempts, errors by kind)."""
        return {key: ep.stats for key, ep in self._endpoints.items()}

    def limiter(self, endpoint: EndpointConfig) -> AdaptiveLimit:
        """The endpoint's in-flight window (its current limit and decisions)."""
        return self._endpoint(endpoint).limiter

    # -- calls ----------------------------------------------------------------------------------

    async def chat(
        self,
        endpoint: EndpointConfig,
        messages: list[Message],
        truncation: TruncationPolicy | None = None,
        priority: Priority = (),
        observer: Observer | None = None,
    ) -> CallResult:
        """One chat completion with retries; raises :class:`LLMError` when none is usable.

        ``truncation`` overrides the client's policy for this call (jobs choose their own).
        Calls waiting for the endpoint's window go in ``priority`` order (lower first).
        ``observer`` (else the client's) is told each attempt's outcome.
        """
        started = time.monotonic()
        self._ensure_session()  # fail fast when used from another event loop
        ep = self._endpoint(endpoint)
        ep.stats.calls += 1
        params = endpoint.request_params()
        observe = observer or self.observer
        outcome = await self._with_retries(endpoint, ep, messages, params, 0, priority, observe)
        billed = [outcome.response.prompt_tokens, outcome.response.completion_tokens]
        if outcome.response.finish_reason == "length":
            policy = truncation or self.truncation
            outcome = await self._handle_truncation(
                endpoint, ep, messages, outcome, policy, priority, billed, observe
            )
        response = outcome.response
        return CallResult(
            text=response.text,
            finish_reason=response.finish_reason,
            prompt_tokens=response.prompt_tokens,
            completion_tokens=response.completion_tokens,
            latency_s=outcome.latency_s,
            total_s=time.monotonic() - started,
            attempts=outcome.attempts,
            request_params=outcome.params,
            model=response.model,
            response_id=response.response_id,
            reasoning=response.reasoning,
            billed=(billed[0], billed[1]),
        )

    async def _handle_truncation(
        self,
        endpoint: EndpointConfig,
        ep: Server,
        messages: list[Message],
        outcome: _Outcome,
        policy: TruncationPolicy,
        priority: Priority,
        billed: list[int],
        observe: Observer | None,
    ) -> _Outcome:
        """A larger retry (or the truncation error); ``billed`` [prompt, completion] grows by
        each answered attempt's usage."""
        current = endpoint.budget(outcome.params)
        larger = min(current * 2, self.truncation_max_tokens)
        if policy == Truncation.retry_larger and larger > current:
            log.info(
                "truncated answer from %s (%s=%d); retrying with %d",
                safe_url(endpoint.base_url),
                endpoint.token_param,
                current,
                larger,
            )
            _note_retry("truncated")
            bigger = endpoint.request_params(max_tokens=larger)
            outcome = await self._with_retries(
                endpoint, ep, messages, bigger, outcome.attempts, priority, observe
            )
            billed[0] += outcome.response.prompt_tokens
            billed[1] += outcome.response.completion_tokens
            if outcome.response.finish_reason != "length":
                return outcome
            current = larger
        self._count_error(ep, "truncated")
        raise LLMError(
            "truncated",
            f"finish_reason=length at {endpoint.token_param}={current}",
            outcome.attempts,
            prompt_tokens=billed[0],
            completion_tokens=billed[1],
        )

    async def _with_retries(
        self,
        endpoint: EndpointConfig,
        ep: Server,
        messages: list[Message],
        params: dict[str, Any],
        attempts_before: int,
        priority: Priority,
        observe: Observer | None,
    ) -> _Outcome:
        """Attempts under the retry policy until one answers; errors become LLMError."""
        body = orjson.dumps({**params, "messages": messages})
        # What a rate limit charges for this request: its prompt (≈4 bytes a token) and budget.
        tokens = len(body) // 4 + endpoint.budget(params)

        def before_sleep(state: Any) -> None:
            err = state.outcome.exception()
            ep.stats.retries += 1
            _note_retry(getattr(err, "kind", None) or "error")
            log.warning(
                "LLM call to %s failed (%s, attempt %d/%d); retrying in %.2fs",
                safe_url(endpoint.base_url),
                getattr(err, "kind", "?"),
                state.attempt_number,
                self.max_attempts,
                state.upcoming_sleep,
            )

        attempt = 0
        try:
            async for try_ in self.retry.async_retrying(before_sleep=before_sleep):
                with try_:
                    attempt = try_.retry_state.attempt_number
                    try:
                        response, latency = await self._attempt(
                            endpoint, ep, body, tokens, priority
                        )
                    except _AttemptError as err:
                        if observe is not None:  # the circuit breaker counts failures
                            observe(endpoint, err.kind, err.message, attempt)
                        raise
            if observe is not None:
                observe(endpoint, None, "", attempt)
        except _AttemptError as err:
            if self.retry.too_long(err):
                err.message += f"; Retry-After {err.retry_after_s:.0f}s exceeds the cap"
            self._count_error(ep, err.kind)
            total = attempts_before + attempt
            raise LLMError(err.kind, err.message, total, status=err.status) from None
        return _Outcome(response, latency, attempts_before + attempt, params)

    @staticmethod
    def _count_error(ep: Server, kind: str) -> None:
        ep.stats.errors[kind] = ep.stats.errors.get(kind, 0) + 1

    async def _attempt(
        self, endpoint: EndpointConfig, ep: Server, body: bytes, tokens: int, priority: Priority
    ) -> tuple[_Response, float]:
        headers = {"Content-Type": "application/json"}
        if endpoint.api_key is not None:
            headers["Authorization"] = f"Bearer {endpoint.api_key.get_secret_value()}"
        timeout = aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=self.connect_timeout_s)
        ep.gate.share = ep.limiter.live
        await ep.gate.admit(tokens)
        limiter, stats = ep.limiter, ep.stats
        started = await limiter.acquire(priority)
        if stats.inflight == 0:
            stats.busy_since = time.monotonic()
        stats.inflight += 1
        stats.max_inflight = max(stats.max_inflight, stats.inflight)
        stats.attempts += 1
        status: int | None = None
        failed = False  # no answer: a timeout or a dropped connection
        try:
            reply = await self.outbound.request(
                "POST", endpoint.chat_url, data=body, headers=headers, timeout=timeout
            )
            status = reply.status
        except OutboundRefused as exc:
            raise _AttemptError("client_error", f"endpoint refused: {exc}", False) from None
        except ResponseTooLarge as exc:
            status = 200  # it answered; what it said is unusable
            raise _AttemptError("bad_response", str(exc), False) from None
        except TimeoutError:
            failed = True
            raise _AttemptError("timeout", f"no answer within {self.timeout_s}s", True) from None
        except aiohttp.ClientError as exc:
            # Refused, reset, closed without a response, broken payload …
            failed = True
            raise _AttemptError("connection", type(exc).__name__, True) from None
        finally:
            latency = time.monotonic() - started
            stats.inflight -= 1
            if status is not None:
                stats.answered_at = time.monotonic()
            # Recorded before the slot is released: a pushback must shrink the window before
            # the slot is handed to the next waiter (or it goes straight into the same full
            # queue). A cancelled attempt says nothing about the server.
            if failed or status is not None:
                overloaded = failed or status in (429, 503)
                limiter.record(started, latency if status == 200 else None, overloaded)
            limiter.release()
        ep.gate.observe(reply.headers, tokens)
        if status != 200:
            raise _status_error(reply, endpoint)
        return _parse_response(reply.body), latency


_METRICS_MAX_BYTES = 4 * 1024**2
Observer = Callable[["EndpointConfig", str | None, str, int], None]


def _metrics_url(base_url: str) -> str | None:
    """Where vLLM serves its Prometheus page: the server root, not under /v1."""
    try:
        url = URL(base_url)
    except (ValueError, TypeError):
        return None
    if not url.is_absolute():
        return None
    return str(url.with_path("/metrics").with_query(None))


def _status_error(reply: Reply, endpoint: EndpointConfig) -> _AttemptError:
    status = reply.status
    if reply.redirect:
        return _AttemptError("client_error", describe(reply), False, status)
    secret = endpoint.api_key.get_secret_value() if endpoint.api_key is not None else None
    message = describe(reply, secret)
    if status == 429:
        retry_after = parse_retry_after(reply.headers.get("Retry-After"))
        return _AttemptError("rate_limited", message, True, status, retry_after)
    if status == 408:
        return _AttemptError("timeout", message, True, status)
    if status >= 500:
        return _AttemptError("server_error", message, True, status)
    return _AttemptError("client_error", message, False, status)


def _parse_response(raw: bytes) -> _Response:
    """vLLM/OpenAI chat.completion → _Response; anything malformed is a (retryable) bad_response."""
    try:
        data = orjson.loads(raw)
        choice = data["choices"][0]
        text = choice["message"]["content"]
        finish = choice.get("finish_reason") or "stop"
        # vLLM's reasoning parsers say reasoning_content, some servers reasoning.
        message = choice["message"]
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if text is None and reasoning is not None:
            text = ""  # all reasoning, no answer: an (empty) answer, not a malformed response
        usage = data.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise _AttemptError("bad_response", f"malformed response ({exc!r})", True) from None
    if not isinstance(text, str):
        raise _AttemptError("bad_response", "response has no text content", True)
    if finish == "abort":
        # vLLM aborted the request (e.g. engine restart): nothing usable, worth retrying.
        raise _AttemptError("server_error", "request aborted by the server", True)
    return _Response(
        text=text,
        finish_reason=finish,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        model=data.get("model"),
        response_id=data.get("id"),
        reasoning=reasoning if isinstance(reasoning, str) else None,
    )
