"""The adaptive in-flight bound and hosted-API behaviours, against the simulator over real HTTP."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import pytest
import tenacity
from pydantic import ValidationError

from cgd.client import CgdClient
from cgd.generation.concurrency import (
    AdaptiveLimit,
    ControlConfig,
    LocalLimitStore,
    RedisLimitStore,
    parse_vllm_metrics,
)
from cgd.generation.ratelimit import parse_reset
from cgd.llm_client import EndpointConfig, LLMClient, LLMError
from cgd.retry import RetryPolicy, Transient
from cgd.simulator import SimConfig, run_simulator
from cgd.templates import get_template
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.timeout(120)
TEMPLATE = get_template("cgd")


def client(**kw: Any) -> LLMClient:
    defaults: dict[str, Any] = dict(
        timeout_s=20.0, max_attempts=8, backoff_base_s=0.05, backoff_max_s=0.5, rng=random.Random(0)
    )
    return LLMClient(**{**defaults, **kw})


async def flood(c: LLMClient, ep: EndpointConfig, n: int, demand: int) -> list[Any]:
    """``n`` calls, ``demand`` of them wanting to be in flight at once (a job's items)."""
    gate = asyncio.Semaphore(demand)

    async def one(i: int) -> Any:
        async with gate:
            return await c.chat(ep, TEMPLATE.probe(f"What is {i} plus {i}?"))

    return await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)


# -- adaptive in-flight bound ----------------------------------------------------------------------


@pytest.mark.slow
def test_bounded_queue_server_every_call_completes_with_few_429s() -> None:
    """A server that answers 429 once more than 4 requests wait (and serves no /metrics): the
    bound settles under what it admits; every call completes and < 5% of requests get a 429."""

    async def main() -> None:
        cfg = SimConfig(port=0, slots=32, latency_s=0.2, max_waiting=4, serve_metrics=False)
        async with run_simulator(cfg) as sim, client() as c:
            ep = EndpointConfig(base_url=sim.base_url, model="m")
            results = await flood(c, ep, 3000, demand=400)
            errors = [r for r in results if isinstance(r, Exception)]
            stats = sim.state.stats
            rejected = stats.by_status["429"]
            assert errors == [] and stats.by_status["200"] == 3000
            assert rejected / stats.requests_total < 0.05, (rejected, stats.requests_total)
            assert stats.max_running == 32  # and the server was kept full
            assert c.limiter(ep).global_limit < 64  # learnt, not the ceiling (1024)

    asyncio.run(main())


@pytest.mark.slow
def test_bound_follows_vllm_metrics_to_capacity_plus_a_small_queue() -> None:
    async def main() -> None:
        cfg = SimConfig(port=0, slots=48, latency_s=0.15)
        async with run_simulator(cfg) as sim, client() as c:
            ep = EndpointConfig(base_url=sim.base_url, model="m")
            results = await flood(c, ep, 2000, demand=600)
            assert not [r for r in results if isinstance(r, Exception)]
            limiter = c.limiter(ep)
            assert limiter.metrics is not None  # it read the simulator's /metrics
            # vLLM (it serves the gauges): the start moved from 32 to 128 before anything else.
            assert limiter.decisions[0][1:] == ("vllm", 128.0)
            assert any(reason == "waiting" for _, reason, _ in limiter.decisions)
            assert sim.state.stats.max_running == 48
            assert 48 <= limiter.global_limit <= 96, limiter.global_limit
            assert sim.state.stats.max_inflight < 600  # the demand never all went out

    asyncio.run(main())


def test_ceiling_bounds_the_adaptive_limit() -> None:
    async def main() -> None:
        cfg = SimConfig(port=0, slots=64, latency_s=0.05)
        async with run_simulator(cfg) as sim, client(max_inflight_per_endpoint=10) as c:
            ep = EndpointConfig(base_url=sim.base_url, model="m")
            await flood(c, ep, 200, demand=100)
            assert sim.state.stats.max_inflight <= 10

    asyncio.run(main())


def test_parse_vllm_metrics_both_kv_cache_names() -> None:
    page = (
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{model_name="a"} 3.0\n'
        'vllm:num_requests_running{model_name="b"} 2\n'
        'vllm:num_requests_waiting{model_name="a"} 7\n'
        'vllm:gpu_cache_usage_perc{model_name="a"} 0.5\n'
    )
    m = parse_vllm_metrics(page)
    assert m is not None and (m.running, m.waiting, m.kv_cache) == (5.0, 7.0, 0.5)
    assert parse_vllm_metrics(page.replace("gpu_cache", "kv_cache")).kv_cache == 0.5  # type: ignore[union-attr]
    assert parse_vllm_metrics("process_cpu_seconds_total 3\n") is None


def test_limit_is_shared_through_redis_by_live_processes() -> None:
    """Two processes (two limiters, distinct ids) on one endpoint each take half of one limit,
    and one process's decrease is the other's too."""

    async def main() -> None:
        store = RedisLimitStore(f"{REDIS_URL}/0")
        key = f"http://shared-{uuid.uuid4().hex}/v1"
        cfg = ControlConfig(ceiling=200, initial=40, sync_s=0.05)
        a = AdaptiveLimit(key, cfg, store, proc="a")
        b = AdaptiveLimit(key, cfg, store, proc="b")
        try:
            for limiter in (a, b):
                limiter.record(0.0, None, False)  # demand seen: both register as live
                await limiter.acquire()
                limiter.start(None)
            await asyncio.sleep(0.3)
            assert (a.live, b.live) == (2, 2) and a.limit == b.limit == 20
            await store.apply(key, 0.5, 0.0, True, cfg)  # e.g. `a` saw a 429 burst
            await store.apply(key, 0.5, 0.0, True, cfg)  # `b` saw the same burst: no effect
            await asyncio.sleep(0.3)
            assert a.global_limit == b.global_limit == 20 and a.limit == 10
        finally:
            a.stop()
            b.stop()
            await store.aclose()

    asyncio.run(main())


def test_waiters_are_served_oldest_chunk_first() -> None:
    """Calls waiting for the window go in priority order (the pipeline passes its chunk's start
    and the stage's depth), then in arrival order; a waiter cancelled meanwhile is skipped."""

    async def main() -> None:
        cfg = ControlConfig(ceiling=1, initial=1)
        limiter = AdaptiveLimit("http://prio/v1", cfg, LocalLimitStore(), adaptive=False)
        await limiter.acquire()
        order: list[str] = []

        async def wait(name: str, priority: tuple[float, int]) -> None:
            await limiter.acquire(priority)
            order.append(name)

        # (chunk start, -stage depth): the oldest chunk first, then its items' later stages.
        waiting = [("young", (3.0, 0)), ("old probe", (1.0, 0)), ("gone", (0.5, 0)),
                   ("middle", (2.0, -1)), ("old refine", (1.0, -2)),
                   ("old probe 2", (1.0, 0))]  # fmt: skip
        tasks = {name: asyncio.create_task(wait(name, p)) for name, p in waiting}
        await asyncio.sleep(0.01)
        tasks["gone"].cancel()
        for _ in range(5):
            limiter.release()
            await asyncio.sleep(0.01)
        assert order == ["old refine", "old probe", "old probe 2", "middle", "young"]
        assert limiter.inflight == 1

    asyncio.run(main())


def test_a_429_shrinks_the_window_before_its_slot_is_passed_on() -> None:
    """A 429 is recorded before its slot is released: the slot is not handed to the next waiter
    (which would go straight into the same full queue), and the window stays at what the server
    still admits until the controller decides, whatever the shared limit says meanwhile."""

    async def main() -> None:
        cfg = ControlConfig(ceiling=64, initial=8)
        limiter = AdaptiveLimit("http://full/v1", cfg, LocalLimitStore())
        starts = [await limiter.acquire() for _ in range(8)]
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.01)
        for started in starts[:3]:  # three 429s come back
            limiter.record(started, None, True)
            limiter.release()
        await asyncio.sleep(0.01)
        assert not waiter.done() and limiter.inflight == 5 and limiter.limit == 5
        limiter._set_global(32)  # the shared limit, re-read meanwhile, does not reopen it
        assert limiter.limit == 5
        waiter.cancel()

    asyncio.run(main())


# -- hosted endpoints ------------------------------------------------------------------------------


def test_token_param_for_reasoning_models() -> None:
    """OpenAI's reasoning models answer 400 to max_tokens and take max_completion_tokens."""

    async def main() -> None:
        cfg = SimConfig(port=0, reject_params=["max_tokens"])
        async with run_simulator(cfg) as sim, client() as c:
            plain = EndpointConfig(base_url=sim.base_url, model="o", max_tokens=2048)
            with pytest.raises(LLMError) as err:
                await c.chat(plain, TEMPLATE.probe("1+1?"))
            assert err.value.status == 400 and err.value.attempts == 1  # never retried
            hosted = plain.model_copy(update={"token_param": "max_completion_tokens"})
            result = await c.chat(hosted, TEMPLATE.probe("1+1?"))
            assert result.request_params["max_completion_tokens"] == 2048
            assert "max_tokens" not in result.request_params

    asyncio.run(main())


def test_omit_drops_parameters_a_server_rejects() -> None:
    async def main() -> None:
        rejected = ["presence_penalty", "frequency_penalty", "seed", "stop", "top_p"]
        async with run_simulator(SimConfig(port=0, reject_params=rejected)) as sim, client() as c:
            ep = EndpointConfig(base_url=sim.base_url, model="o", omit=rejected, temperature=0.7)
            result = await c.chat(ep, TEMPLATE.probe("1+1?"))
            assert not set(rejected) & result.request_params.keys()  # the stored params say so
            sent = sim.state.stats.recent[-1]["params"]
            assert not set(rejected) & sent.keys() and sent["temperature"] == 0.7

    asyncio.run(main())
    with pytest.raises(ValidationError, match="omit"):
        EndpointConfig(base_url="http://h/v1", model="m", omit=["max_tokens"])
    with pytest.raises(ValidationError, match="omit"):
        EndpointConfig(base_url="http://h/v1", model="m", omit=["messages"])


def test_reasoning_content_is_kept_apart_from_the_answer() -> None:
    async def main() -> None:
        async with run_simulator(SimConfig(port=0, reasoning=True)) as sim, client() as c:
            ep = EndpointConfig(base_url=sim.base_url, model="o")
            result = await c.chat(ep, TEMPLATE.probe("What is 2 plus 2?"))
            assert result.reasoning is not None and result.reasoning.startswith("Thinking")
            assert "Thinking" not in result.text and "\\boxed{" in result.text

    asyncio.run(main())


def test_x_ratelimit_headers_pause_requests_until_reset() -> None:
    """A hosted API that allows 10 requests per second and says so in its headers: the client
    waits for the announced reset instead of collecting 429s."""

    async def main() -> None:
        cfg = SimConfig(port=0, slots=64, latency_s=0.01, rpm=10, rate_window_s=1.0)
        async with run_simulator(cfg) as sim, client() as c:
            ep = EndpointConfig(base_url=sim.base_url, model="o")
            # One at a time, as a polite job's first calls: the headers count down to 0.
            for i in range(10):
                await c.chat(ep, TEMPLATE.probe(f"{i}?"))
            started = time.monotonic()
            results = await flood(c, ep, 20, demand=20)
            assert not [r for r in results if isinstance(r, Exception)]
            assert sim.state.stats.by_status["429"] <= 2, sim.state.stats.by_status
            assert time.monotonic() - started >= 1.0  # it waited for the windows to reset

    asyncio.run(main())


def test_rate_limit_rpm_paces_requests() -> None:
    async def main() -> None:
        async with run_simulator(SimConfig(port=0, slots=64, latency_s=0.01)) as sim, client() as c:
            ep = EndpointConfig(base_url=sim.base_url, model="o", rate_limit={"rpm": 600})
            started = time.monotonic()
            results = await flood(c, ep, 90, demand=90)
            elapsed = time.monotonic() - started
            assert not [r for r in results if isinstance(r, Exception)]
            # A burst of 6 s worth (60), then 10 a second: 30 more take >= 3 s.
            assert 2.7 <= elapsed < 10, elapsed
            assert sim.state.stats.requests_total == 90

    asyncio.run(main())


def test_parse_reset_durations() -> None:
    assert parse_reset("1s") == 1.0 and parse_reset("6m0s") == 360.0
    assert parse_reset("20ms") == pytest.approx(0.02) and parse_reset("0.5") == 0.5
    assert parse_reset("1h2m3.5s") == pytest.approx(3723.5)
    assert parse_reset("soon") is None and parse_reset(None) is None


# -- one retry policy ------------------------------------------------------------------------------


def test_one_retry_policy_for_every_client() -> None:
    llm, team = LLMClient(), CgdClient("http://127.0.0.1:9", "k")
    try:
        assert isinstance(llm.retry, RetryPolicy) and isinstance(team.retry, RetryPolicy)
    finally:
        team.close()
    policy = RetryPolicy(max_attempts=4, backoff_base_s=0.0, backoff_max_s=0.0)
    waits: list[float] = []
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Transient("busy", retry_after_s=0.25)  # the server's Retry-After is a floor
        return "ok"

    for attempt in policy.retrying(sleep=waits.append):
        with attempt:
            assert flaky() == "ok"
    assert calls == 3 and waits == [0.25, 0.25]
    # A Retry-After longer than the cap stops at once; a non-transient error is never retried.
    for exc in (Transient("later", retry_after_s=policy.retry_after_max_s + 1), ValueError("no")):
        tries = 0
        with pytest.raises(type(exc)):
            for attempt in policy.retrying(sleep=waits.append):
                with attempt:
                    tries += 1
                    raise exc
        assert tries == 1
    assert isinstance(policy.retrying(), tenacity.Retrying)
