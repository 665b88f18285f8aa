"""The circuit breaker's rules and the per-team in-flight bound, against the simulator."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from cgd.generation.breaker import Breaker, TeamLimits, breaker_key
from cgd.llm_client import EndpointConfig
from cgd.simulator import SimulatorProcess


def _trips(sim: SimulatorProcess, outcomes: list[tuple[str | None, int]]) -> list[tuple[str, str]]:
    endpoint = EndpointConfig(base_url=sim.base_url, model="m")
    opened: list[tuple[str, str]] = []

    async def run() -> None:
        breaker = Breaker(failures=3, probe_timeout_s=2)
        key = breaker_key(None, endpoint)
        breaker.subscribe(key, lambda ep, err: opened.append((ep, err)))
        for kind, attempt in outcomes:
            breaker.record(key, endpoint, kind, "boom", attempt)
        await asyncio.sleep(1.0)  # the confirming probe

    asyncio.run(run())
    return opened


def test_breaker_needs_a_failed_retry_and_a_failed_probe() -> None:
    with SimulatorProcess(["--port", "0", "--latency", "0.01", "--rate-500", "1.0"]) as sim:
        # Many first attempts failing at once (a burst on a busy server): nothing opens.
        assert _trips(sim, [("timeout", 1)] * 10) == []
        # An answer in between resets the streak; 429 and 4xx mean the server answers.
        mixed = [("timeout", 1), ("timeout", 2), (None, 1), ("rate_limited", 2), ("timeout", 2)]
        assert _trips(sim, mixed) == []
        # A streak with failed retries, and the probe fails too: open, naming the endpoint.
        opened = _trips(sim, [("connection", 1), ("connection", 2), ("connection", 3)])
        assert opened == [(sim.base_url, "connection: boom")]
        # The same streak while the server answers the probe (a poisoned request): stays shut.
        httpx.post(f"{sim.url}/sim/config", json={"rate_500": 0.0}).raise_for_status()
        assert _trips(sim, [("server_error", 1), ("server_error", 2), ("server_error", 3)]) == []


def test_team_limits_bound_one_teams_calls_per_endpoint() -> None:
    limits = TeamLimits(per_team=2)
    a, b = uuid.uuid4(), uuid.uuid4()
    peak = {a: 0, b: 0}
    now = {a: 0, b: 0}

    async def call(team: uuid.UUID) -> None:
        async with limits.slot(team, "http://e/v1"):
            now[team] += 1
            peak[team] = max(peak[team], now[team])
            await asyncio.sleep(0.01)
            now[team] -= 1

    async def run() -> None:
        await asyncio.gather(*(call(a) for _ in range(10)), *(call(b) for _ in range(3)))

    asyncio.run(run())
    assert peak == {a: 2, b: 2}
