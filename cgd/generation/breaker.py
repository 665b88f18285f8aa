"""Circuit breaker per endpoint, and per-team in-flight bounds (one of each per worker process).

The breaker counts a *streak*: failed attempts against an endpoint (connection errors, 5xx,
timeouts, malformed answers) with no answer from it in between. It opens when the streak holds
``failures`` attempts of which at least one was a retry, or two retries (a lone call failing
three times running), and a tiny probe call to the endpoint fails too (so one poisoned request
that always gets a 500 fails alone, as before, on a healthy server): every chunk of this
process that uses the endpoint then stops at once,
leaves its items where they are and parks its job as ``paused`` (instead of burning every
item's attempts against a dead server). Any answer closes it again. Requiring a failed retry
keeps a burst of first-attempt failures on a busy but healthy server (a few requests hung at
once, each retried successfully) from pausing anything. A hanging endpoint therefore holds a
worker slot for about two request timeouts when several calls are in flight, three at most.

Rate limits (429) and client errors (4xx) do not count: the server is there and answering.
The sweeper probes a paused job's endpoint and resumes the job when it answers
(:func:`probe`); ``POST /v1/jobs/{id}/resume`` resumes it by hand.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache

import httpx

from cgd.llm_client import EndpointConfig, safe_url

ENDPOINT_DOWN_KINDS = frozenset({"timeout", "connection", "server_error", "bad_response"})

Listener = Callable[[str, str], None]  # (endpoint, last error)


@dataclass
class _State:
    consecutive: int = 0
    retries_failed: int = 0
    last_error: str = ""
    opened_at: float | None = None
    confirming: bool = False
    listeners: set[Listener] = field(default_factory=set)


class Breaker:
    def __init__(self, failures: int, probe_timeout_s: float = 5.0) -> None:
        self.failures = failures
        self.probe_timeout_s = probe_timeout_s
        self._states: dict[str, _State] = {}

    def _state(self, key: str) -> _State:
        return self._states.setdefault(key, _State())

    def record(
        self, endpoint: EndpointConfig, kind: str | None, message: str = "", attempt: int = 1
    ) -> None:
        """One attempt's outcome (``kind`` None = answered). Called by the LLM client, on the
        event loop."""
        st = self._state(endpoint.key)
        if kind is None or kind not in ENDPOINT_DOWN_KINDS:
            st.consecutive, st.retries_failed, st.opened_at = 0, 0, None
            return
        st.consecutive += 1
        st.retries_failed += attempt > 1
        st.last_error = f"{kind}: {message}"[:500]
        tripped = (st.consecutive >= self.failures and st.retries_failed) or st.retries_failed >= 2
        if tripped and not st.confirming:
            st.confirming = True
            asyncio.get_running_loop().create_task(self._confirm(endpoint, st))

    async def _confirm(self, endpoint: EndpointConfig, st: _State) -> None:
        try:
            error = await asyncio.to_thread(probe, endpoint, self.probe_timeout_s)
        finally:
            st.confirming = False
        if error is None:  # the server answers: the failures were the requests', not its own
            st.consecutive, st.retries_failed = 0, 0
            return
        st.opened_at = time.monotonic()
        for listener in list(st.listeners):
            listener(safe_url(endpoint.key), st.last_error)

    def is_open(self, key: str) -> bool:
        return self._state(key).opened_at is not None

    def reset(self, key: str) -> None:
        st = self._state(key)
        st.consecutive, st.retries_failed, st.opened_at = 0, 0, None

    def subscribe(self, key: str, listener: Listener) -> None:
        self._state(key).listeners.add(listener)

    def unsubscribe(self, key: str, listener: Listener) -> None:
        self._state(key).listeners.discard(listener)


class TeamLimits:
    """In-flight calls of one team per endpoint (``CGD_TEAM_MAX_INFLIGHT_PER_ENDPOINT``), so one
    team's chunks can never take the whole window of a shared endpoint."""

    def __init__(self, per_team: int) -> None:
        self.per_team = per_team
        self._sems: dict[tuple[uuid.UUID, str], asyncio.Semaphore] = {}

    @asynccontextmanager
    async def slot(self, team_id: uuid.UUID, key: str) -> AsyncIterator[None]:
        sem = self._sems.get((team_id, key))
        if sem is None:
            sem = self._sems[(team_id, key)] = asyncio.Semaphore(self.per_team)
        async with sem:
            yield


@cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()  # once: building one costs ~0.1 s


def probe(endpoint: EndpointConfig, timeout_s: float) -> str | None:
    """One tiny chat call (max_tokens=1); None when the endpoint answered, else why not."""
    headers = {}
    if endpoint.api_key is not None:
        headers["Authorization"] = f"Bearer {endpoint.api_key.get_secret_value()}"
    body = {
        "model": endpoint.model,
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": 1,
        "temperature": 0.0,
    }
    try:
        r = httpx.post(
            endpoint.chat_url, json=body, headers=headers, timeout=timeout_s,
            follow_redirects=False, verify=_tls_context(),
        )  # fmt: skip
    except httpx.TimeoutException:
        return f"timeout: no answer within {timeout_s:g}s"
    except httpx.HTTPError as exc:
        return f"connection: {type(exc).__name__}"
    if r.status_code >= 500:
        return f"server_error: HTTP {r.status_code}"
    return None  # 2xx, and also 4xx/429: the server is up and answering
