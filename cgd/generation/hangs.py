"""Finding a hung server in seconds, not after two request timeouts.

A server that accepts requests and never answers looks, call by call, exactly like a slow one:
nothing comes back until the request timeout (``CGD_LLM_TIMEOUT_S``, 600 s by default). Waiting
for two such timeouts held a worker's slots for twenty minutes. So, per worker process, once a
server with calls outstanding has answered nothing for ``hang_suspect_s``, the watch asks the
server itself, through the guarded outbound client:

* **Is it there?** ``GET {base_url}/models`` (inside the allowed prefix; the OpenAI protocol's
  cheapest call, answered by vLLM's API process without touching the engine). ``hang_probes``
  unanswered in a row (``hang_probe_timeout_s`` each) → hung. Any HTTP answer counts as there.
* **Is it working?** Where we may read the server's ``/metrics`` (vLLM's), the prompt and
  generated token counters must grow: none of our calls answered and no token processed for
  ``hang_after_s`` → hung (the API process answers but the engine is wedged).

A long but live generation passes both: the server answers ``/models`` and its counters move.
A hung server gets every team's breaker on it opened (:meth:`Breaker.open_server`): its chunks
stop and their jobs are ``paused`` naming the server, and the sweeper resumes them when it
answers again. A hosted API without ``/metrics`` is checked for presence only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiohttp

from cgd.generation.breaker import Breaker
from cgd.llm_client import LLMClient, Server, safe_url
from cgd.outbound import OutboundRefused, ResponseTooLarge

log = logging.getLogger("cgd.generation.hangs")


@dataclass(frozen=True)
class HangConfig:
    suspect_s: float = 5.0
    probe_timeout_s: float = 3.0
    probes: int = 2
    after_s: float = 20.0
    tick_s: float = 1.0


@dataclass
class _Suspect:
    since: float  # when the server last showed progress (or fell silent)
    tokens: float | None  # its token counters then
    failed_probes: int = 0
    probing: bool = False
    reported: bool = False


class HangWatch:
    """One per worker process, on its event loop."""

    def __init__(self, client: LLMClient, breaker: Breaker, cfg: HangConfig) -> None:
        self.client = client
        self.breaker = breaker
        self.cfg = cfg
        self._suspects: dict[str, _Suspect] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.tick_s)
            try:
                self.check(time.monotonic())
            except Exception:  # the watch must outlive any one bad reading
                log.exception("hang watch failed")

    def check(self, now: float) -> None:
        for key, server in self.client.servers().items():
            stats = server.stats
            quiet_since = max(stats.answered_at, stats.busy_since)
            if stats.inflight == 0 or now - quiet_since < self.cfg.suspect_s:
                self._suspects.pop(key, None)
                continue
            metrics = server.limiter.metrics
            # Only a fresh reading says anything: a page that stopped answering is no proof of
            # a wedged engine (GET /models decides then).
            fresh = metrics is not None and now - metrics.at <= self.cfg.suspect_s
            tokens = metrics.tokens if fresh and metrics is not None else None
            s = self._suspects.get(key)
            if s is None:
                s = self._suspects[key] = _Suspect(since=quiet_since, tokens=tokens)
            if s.reported:
                continue
            if tokens is not None and (s.tokens is None or tokens > s.tokens):
                s.since, s.tokens = now, tokens  # the engine is working: wait on
            elif tokens is not None and now - s.since >= self.cfg.after_s:
                self._hung(
                    key,
                    s,
                    f"hung: {stats.inflight} call(s) outstanding, no answer and no tokens "
                    f"processed on its /metrics for {now - s.since:.0f}s",
                )
                continue
            if not s.probing:
                s.probing = True
                task = asyncio.get_running_loop().create_task(self._probe(key, server, s))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _probe(self, key: str, server: Server, s: _Suspect) -> None:
        try:
            alive = await self._alive(server.base_url)
            s.failed_probes = 0 if alive else s.failed_probes + 1
            if s.failed_probes >= self.cfg.probes and not s.reported:
                self._hung(
                    key,
                    s,
                    f"hung: {server.stats.inflight} call(s) outstanding and GET /models "
                    f"unanswered within {self.cfg.probe_timeout_s:g}s, {s.failed_probes} times "
                    "in a row",
                )
            elif not alive:
                return  # probe again at once: the next tick starts it
            else:
                await asyncio.sleep(self.cfg.suspect_s)  # alive: ask again in a while
        finally:
            s.probing = False

    async def _alive(self, base_url: str) -> bool:
        url = base_url.rstrip("/") + "/models"
        timeout = aiohttp.ClientTimeout(total=self.cfg.probe_timeout_s)
        try:
            await self.client.outbound.request("GET", url, timeout=timeout, max_bytes=1024**2)
        except (OutboundRefused, ResponseTooLarge):
            return True  # not ours to judge (refused), or it answered (too much)
        except (aiohttp.ClientError, TimeoutError):
            return False
        return True

    def _hung(self, key: str, s: _Suspect, error: str) -> None:
        s.reported = True
        log.warning("server %s looks hung: %s", safe_url(key), error)
        self.breaker.open_server(key, error)
