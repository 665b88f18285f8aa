"""Circuit breaker per team, server and model, and per-team in-flight bounds (one of each per
worker process).

The breaker counts a *streak* for one team's use of one model on one server: failed attempts
(connection errors, 5xx, timeouts, malformed answers) with no answer in between. It opens when
the streak holds ``failures`` attempts of which at least one was a retry, or two retries (a lone
call failing three times running), and a tiny probe call with that team's model and prompt
shape fails too (so one poisoned request that always gets a 500 fails alone, as before, on a
healthy server): every chunk of that team in this process that uses the model there stops at
once, leaves its items where they are and parks its job as ``paused`` (instead of burning every
item's attempts against a dead server). Any answer closes it again. Requiring a failed retry
keeps a burst of first-attempt failures on a busy but healthy server (a few requests hung at
once, each retried successfully) from pausing anything. Keying by team and model means team A's
broken model pauses A only, never team B using another model on the same server.

A server that hangs (answers nothing) is found in seconds by :mod:`cgd.generation.hangs`, which
opens every team's breaker on it at once.

Rate limits (429) and client errors (4xx) do not count: the server is there and answering.
The sweeper probes a paused job's endpoint and resumes the job when it answers
(:func:`probe`); ``POST /v1/jobs/{id}/resume`` resumes it by hand.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

from cgd.generation.spec import JobSpec
from cgd.llm_client import EndpointConfig, safe_url
from cgd.outbound import OutboundRefused, ResponseTooLarge, SyncOutbound, UrlGuard, describe
from cgd.templates import Template

ENDPOINT_DOWN_KINDS = frozenset({"timeout", "connection", "server_error", "bad_response"})

Listener = Callable[[str, str], None]  # (endpoint, last error)
Message = dict[str, str]
# What a streak is counted for: one team's use of one model on one server. A team whose model
# fails pauses itself only, never another team on the same server.
BreakerKey = tuple[uuid.UUID | None, str, str]
PING: list[Message] = [{"role": "user", "content": "ping"}]


def breaker_key(team_id: uuid.UUID | None, endpoint: EndpointConfig) -> BreakerKey:
    return (team_id, endpoint.key, endpoint.model)


def probe_shapes(spec: JobSpec, template: Template) -> list[tuple[EndpointConfig, list[Message]]]:
    """Each endpoint of a job with the prompt shape its probes send: the job's own template
    around a one-line question, so a probe looks like the calls that failed (model and roles
    alike). The student first."""
    shapes = [(spec.teacher, template.critique("1+1?", "2"))]
    if spec.student is not None:
        shapes.insert(0, (spec.student, template.probe("1+1?")))
    return shapes


@dataclass
class _State:
    consecutive: int = 0
    retries_failed: int = 0
    last_error: str = ""
    opened_at: float | None = None
    confirming: bool = False
    listeners: set[Listener] = field(default_factory=set)


class Breaker:
    def __init__(
        self, failures: int, probe_timeout_s: float = 5.0, guard: UrlGuard | None = None
    ) -> None:
        self.failures = failures
        self.probe_timeout_s = probe_timeout_s
        self.guard = guard
        self._states: dict[BreakerKey, _State] = {}

    def _state(self, key: BreakerKey) -> _State:
        return self._states.setdefault(key, _State())

    def record(
        self,
        key: BreakerKey,
        endpoint: EndpointConfig,
        kind: str | None,
        message: str = "",
        attempt: int = 1,
        probe_messages: list[Message] | None = None,
    ) -> None:
        """One attempt's outcome (``kind`` None = answered), for the team and model in ``key``.
        Called by the LLM client, on the event loop. ``probe_messages``: the team's prompt shape
        for the confirming probe."""
        st = self._state(key)
        if kind is None or kind not in ENDPOINT_DOWN_KINDS:
            st.consecutive, st.retries_failed, st.opened_at = 0, 0, None
            return
        st.consecutive += 1
        st.retries_failed += attempt > 1
        st.last_error = f"{kind}: {message}"[:500]
        tripped = (st.consecutive >= self.failures and st.retries_failed) or st.retries_failed >= 2
        if tripped and not st.confirming:
            st.confirming = True
            asyncio.get_running_loop().create_task(
                self._confirm(endpoint, st, probe_messages or PING)
            )

    async def _confirm(self, endpoint: EndpointConfig, st: _State, messages: list[Message]) -> None:
        try:
            error = await asyncio.to_thread(
                probe, endpoint, self.probe_timeout_s, self.guard, messages
            )
        finally:
            st.confirming = False
        if error is None:  # the server answers: the failures were the requests', not its own
            st.consecutive, st.retries_failed = 0, 0
            return
        self._open(endpoint.key, st)

    def _open(self, server: str, st: _State) -> None:
        st.opened_at = time.monotonic()
        for listener in list(st.listeners):
            listener(safe_url(server), st.last_error)

    def open_server(self, server: str, error: str) -> None:
        """The whole server is down or hung (:mod:`cgd.generation.hangs`): open every team's
        breaker on it."""
        for (_, url, _), st in list(self._states.items()):
            if url == server and st.opened_at is None:
                st.last_error = error[:500]
                self._open(server, st)

    def is_open(self, key: BreakerKey) -> bool:
        return self._state(key).opened_at is not None

    def reset(self, key: BreakerKey) -> None:
        st = self._state(key)
        st.consecutive, st.retries_failed, st.opened_at = 0, 0, None

    def subscribe(self, key: BreakerKey, listener: Listener) -> None:
        self._state(key).listeners.add(listener)

    def unsubscribe(self, key: BreakerKey, listener: Listener) -> None:
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


def probe(
    endpoint: EndpointConfig,
    timeout_s: float,
    guard: UrlGuard | None,
    messages: list[Message] | None = None,
) -> str | None:
    """One tiny chat call (max_tokens=1) with the team's model and prompt shape; None when the
    endpoint answered, else why not. Through the guarded client: allow-list, no redirects."""
    headers = {}
    if endpoint.api_key is not None:
        headers["Authorization"] = f"Bearer {endpoint.api_key.get_secret_value()}"
    body = {
        "model": endpoint.model,
        "messages": messages or PING,
        "max_tokens": 1,
        "temperature": 0.0,
    }
    try:
        with SyncOutbound(guard, timeout_s, headers) as client:
            reply = client.request("POST", endpoint.chat_url, json=body)
    except OutboundRefused as exc:
        return f"refused: {exc}"
    except ResponseTooLarge as exc:
        return f"bad_response: {exc}"
    except httpx.TimeoutException:
        return f"timeout: no answer within {timeout_s:g}s"
    except httpx.HTTPError as exc:
        return f"connection: {type(exc).__name__}"
    if reply.status >= 500 or reply.redirect:
        return f"server_error: {describe(reply)}"
    return None  # 2xx, and also 4xx/429: the server is up and answering
