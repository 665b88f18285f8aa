"""LLMClient against the simulated server over real HTTP: retries, timeouts, bounds, truncation."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from pydantic import ValidationError

from cgd.llm_client import CallResult, EndpointConfig, LLMClient, LLMError, parse_retry_after
from cgd.simulator import RunningSimulator, SimConfig, SimulatorProcess, run_simulator
from cgd.templates import get_template

pytestmark = pytest.mark.timeout(60)

TEMPLATE = get_template("cgd")
SECRET = "sk-test-very-secret"
SAMPLING_KEYS = {
    "model", "temperature", "top_p", "max_tokens", "presence_penalty", "frequency_penalty",
    "seed", "stop", "n", "stream",
}  # fmt: skip


def fast_client(**kw: Any) -> LLMClient:
    defaults: dict[str, Any] = dict(
        timeout_s=2.0, max_attempts=4, backoff_base_s=0.01, backoff_max_s=0.05, rng=random.Random(0)
    )
    return LLMClient(**{**defaults, **kw})


def endpoint(sim: RunningSimulator | SimulatorProcess, **kw: Any) -> EndpointConfig:
    return EndpointConfig(base_url=sim.base_url, model="m", **kw)


Body = Callable[[RunningSimulator, LLMClient], Awaitable[None]]


def run(config: SimConfig, client: LLMClient, body: Body) -> None:
    """Run ``body(sim, client)`` against an in-process simulator, closing the client after."""

    async def main() -> None:
        async with run_simulator(config) as sim, client:
            await body(sim, client)

    asyncio.run(main())


def sim_config(**kw: Any) -> SimConfig:
    return SimConfig(port=0, slots=kw.pop("slots", 32), latency_s=kw.pop("latency_s", 0.01), **kw)


def probe(i: int = 0) -> list[dict[str, str]]:
    return TEMPLATE.probe(f"What is {i} plus {i}?")


def set_faults(sim: RunningSimulator, **patch: Any) -> None:
    state = sim.state
    state.config = state.config.model_copy(update=patch)


# -- EndpointConfig -------------------------------------------------------------------------------


def test_endpoint_config_params_are_explicit_and_secret_free() -> None:
    ep = EndpointConfig(
        base_url="http://h:1/v1", model="m", api_key=SECRET, extra={"top_k": 20, "min_p": 0.05}
    )
    params = ep.request_params()
    assert SAMPLING_KEYS | {"top_k", "min_p"} == params.keys()
    assert params["n"] == 1 and params["seed"] is None and params["stop"] is None
    assert ep.request_params(max_tokens=7)["max_tokens"] == 7
    assert params is not ep.request_params()  # callers may store/mutate their copy
    for text in (repr(ep), str(ep), ep.model_dump_json(), repr(ep.model_dump()), repr(params)):
        assert SECRET not in text
    assert ep.model_copy(update={"seed": 5}).request_params()["seed"] == 5
    with pytest.raises(ValidationError):
        EndpointConfig(base_url="http://h/v1", model="m", extra={"temperature": 1.0})
    with pytest.raises(ValidationError):
        EndpointConfig(base_url="http://h/v1", model="m", n=2)


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = datetime(2025, 1, 1, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=10), usegmt=True)
    assert parse_retry_after(date, now=now.timestamp()) == pytest.approx(10)


# -- calls ----------------------------------------------------------------------------------------


def test_call_result_and_every_param_sent_explicitly() -> None:
    async def body(sim: RunningSimulator, client: LLMClient) -> None:
        ep = endpoint(sim, api_key=SECRET, temperature=0.2, seed=11, stop=["\n\n\n"])
        result = await client.chat(ep, probe())
        assert isinstance(result, CallResult)
        assert result.finish_reason == "stop" and "\\boxed{" in result.text
        assert result.prompt_tokens > 0 and result.completion_tokens > 0
        assert result.attempts == 1 and 0 < result.latency_s <= result.total_s
        assert result.request_params == ep.request_params()
        assert SECRET not in repr(result)
        sent = sim.state.stats.recent[-1]["params"]
        assert sent == ep.request_params()  # every parameter, none left to server defaults
        assert sent.keys() >= SAMPLING_KEYS

    # The simulator requires the key: the call passing proves it was sent as a bearer token.
    run(sim_config(api_key=SECRET), fast_client(), body)


def test_wrong_api_key_is_a_client_error_without_the_key() -> None:
    async def body(sim: RunningSimulator, client: LLMClient) -> None:
        with pytest.raises(LLMError) as info:
            await client.chat(endpoint(sim, api_key=SECRET), probe())
        assert info.value.kind == "client_error" and info.value.status == 401
        assert info.value.attempts == 1
        assert SECRET not in str(info.value) and SECRET not in repr(info.value)

    run(sim_config(api_key="another-key"), fast_client(), body)


def test_4xx_is_not_retried() -> None:
    async def body(sim: RunningSimulator, client: LLMClient) -> None:
        with pytest.raises(LLMError) as info:
            await client.chat(EndpointConfig(base_url=sim.base_url, model="nope"), probe())
        assert (info.value.kind, info.value.status, info.value.attempts) == ("client_error", 404, 1)
        assert sim.state.stats.requests_total == 1

    run(sim_config(served_models=["m"]), fast_client(), body)


def test_429_storm_mid_job_waits_at_least_retry_after() -> None:
    retry_after = 1.0

    async def body(sim: RunningSimulator, client: LLMClient) -> None:
        ep = endpoint(sim)
        calls = [asyncio.create_task(client.chat(ep, probe(i))) for i in range(40)]
        await asyncio.sleep(0.05)  # part of the job done …
        set_faults(sim, rate_429=1.0, retry_after_s=retry_after)  # … then the storm starts
        await asyncio.sleep(0.3)
        set_faults(sim, rate_429=0.0)
        results = await asyncio.gather(*calls)
        retried = [r for r in results if r.attempts > 1]
        assert retried, "the storm should have hit some calls"
        assert all(r.total_s >= retry_after for r in retried)
        assert sim.state.stats.by_status["429"] >= len(retried)

    # Few slots so that calls are still arriving when the storm begins.
    run(sim_config(slots=4, latency_s=0.02), fast_client(max_inflight_per_endpoint=4), body)


def test_429_retry_waits_retry_after_exactly_one_call() -> None:
    async def body(sim: RunningSimulator, client: LLMClient) -> None:
        set_faults(sim, rate_429=1.0, retry_after_s=1.0)
        task = asyncio.create_task(client.chat(endpoint(sim), probe()))
        await asyncio.sleep(0.1)
        set_faults(sim, rate_429=0.0)  # so the retry succeeds
        started = time.monotonic()
        result = await task
        assert result.attempts == 2
        assert result.total_s >= 1.0 and time.monotonic() - started >= 0.85
        assert result.latency_s < 0.5  # the wait is not counted as latency

    run(sim_config(), fast_client(), body)


def test_retry_after_longer_than_the_cap_fails_at_once() -> None:
    async def body(sim: RunningSimulator, client: LLMClient) -> None:
        with pytest.raises(LLMError) as info:
            await client.chat(endpoint(sim), probe())
        assert info.value.kind == "rate_limited" and info.value.attempts == 1

    run(sim_config(rate_429=1.0, retry_after_s=60), fast_client(retry_after_max_s=5), body)


def test_500s_are_retried_then_succeed(caplog: pytest.LogCaptureFixture) -> None:
    async def body(sim: RunningSimulator, client: LLMClient) -> None:
        ep = endpoint(sim, api_key=SECRET)
        with caplog.at_level(logging.WARNING, logger="cgd.llm_client"):
            results = await asyncio.gather(*(client.chat(ep, probe(i)) for i in range(30)))
        assert any(r.attempts > 1 for r in results)
        assert sum(r.attempts for r in results) == sim.state.stats.requests_total
        assert "server_error" in caplog.text and SECRET not in caplog.text
        assert sim.state.stats.duplicates == sum(r.attempts - 1 for r in results)

    run(sim_config(rate_500=0.4, seed=3), fast_client(max_attempts=10), body)


def test_attempts_are_capped() -> None:
    async def body(sim: RunningSimulator, client: LLMClient) -> None:
        with pytest.raises(LLMError) as info:
            await client.chat(endpoint(sim), probe())
        assert (info.value.kind, info.value.status, info.value.attempts) == ("server_error", 500, 3)
        assert sim.state.stats.requests_total == 3
        assert client.stats()[sim.base_url].errors == {"server_error": 1}

    run(sim_config(poison=["plus"]), fast_client(max_attempts=3), body)


def test_hang_is_cut_at_the_timeout_and_retried() -> None:
    async def body(sim: RunningSimulator, client: LLMClient) -> None:
        started = time.monotonic()
        with pytest.raises(LLMError) as info:
            await client.chat(endpoint(sim), probe())
        elapsed = time.monotonic() - started
        assert (info.value.kind, info.value.attempts) == ("timeout", 2)
        assert 0.4 <= elapsed < 2.0  # two 0.2 s timeouts plus short backoff, not an hour

    run(sim_config(rate_hang=1.0), fast_client(timeout_s=0.2, max_attempts=2), body)


def test_hang_then_recovery_succeeds() -> None:
    async def body(sim: RunningSimulator, client: LLMClient) -> None:
        task = asyncio.create_task(client.chat(endpoint(sim), probe()))
        await asyncio.sleep(0.1)
        set_faults(sim, rate_hang=0.0)
        result = await task
        assert result.attempts == 2 and result.total_s >= 0.25

    run(sim_config(rate_hang=1.0), fast_client(timeout_s=0.25), body)


def test_dropped_connection_is_retried() -> None:
    async def body(sim: RunningSimulator, client: LLMClient) -> None:
        results = await asyncio.gather(*(client.chat(endpoint(sim), probe(i)) for i in range(20)))
        assert any(r.attempts > 1 for r in results)
        assert sim.state.stats.faults["drop"] == sum(r.attempts - 1 for r in results)
        set_faults(sim, rate_drop=1.0)
        with pytest.raises(LLMError) as info:
            await client.chat(endpoint(sim), probe())
        assert (info.value.kind, info.value.attempts) == ("connection", 10)

    run(sim_config(rate_drop=0.3, seed=5), fast_client(max_attempts=10), body)


def test_truncation_fail_policy() -> None:
    async def body(sim: RunningSimulator, client: LLMClient) -> None:
        with pytest.raises(LLMError) as info:
            await client.chat(endpoint(sim, max_tokens=5), probe())
        err = info.value
        assert (err.kind, err.attempts, err.completion_tokens) == ("truncated", 1, 5)
        assert err.prompt_tokens and err.prompt_tokens > 0

    run(sim_config(), fast_client(truncation="fail"), body)


def test_truncation_retry_larger_policy() -> None:
    async def body(sim: RunningSimulator, client: LLMClient) -> None:
        natural = (await client.chat(endpoint(sim), probe())).completion_tokens
        # Just too small: doubling is enough.
        result = await client.chat(endpoint(sim, max_tokens=natural - 1), probe())
        assert result.finish_reason == "stop" and result.attempts == 2
        assert result.request_params["max_tokens"] == 2 * (natural - 1)
        # Far too small: doubling once is not enough, so it is still truncated.
        with pytest.raises(LLMError) as info:
            await client.chat(endpoint(sim, max_tokens=natural // 8), probe())
        assert (info.value.kind, info.value.attempts) == ("truncated", 2)
        # The server truncates whatever the budget: raised, never returned.
        set_faults(sim, rate_truncate=1.0)
        with pytest.raises(LLMError) as info:
            await client.chat(endpoint(sim), probe())
        assert info.value.kind == "truncated"

    client = fast_client(truncation="retry_larger", truncation_max_tokens=10_000)
    run(sim_config(), client, body)


def test_truncation_cap_below_double() -> None:
    async def body(sim: RunningSimulator, client: LLMClient) -> None:
        with pytest.raises(LLMError) as info:
            await client.chat(endpoint(sim, max_tokens=8), probe())
        assert (info.value.kind, info.value.attempts) == ("truncated", 2)
        assert sim.state.stats.recent[-1]["params"]["max_tokens"] == 12  # capped, not 16

    client = fast_client(truncation="retry_larger", truncation_max_tokens=12)
    run(sim_config(), client, body)


def test_inflight_is_bounded_per_endpoint() -> None:
    async def body(sim: RunningSimulator, client: LLMClient) -> None:
        await asyncio.gather(*(client.chat(endpoint(sim), probe(i)) for i in range(100)))
        assert sim.state.stats.max_inflight <= 8
        stats = client.stats()[sim.base_url]
        assert stats.max_inflight == 8 and stats.inflight == 0 and stats.calls == 100

    run(sim_config(slots=64, latency_s=0.02), fast_client(max_inflight_per_endpoint=8), body)


def test_client_is_bound_to_its_loop_until_closed() -> None:
    client = fast_client(max_attempts=1)

    async def use() -> None:
        with pytest.raises(LLMError) as info:  # nothing listens on port 9
            await client.chat(EndpointConfig(base_url="http://127.0.0.1:9/v1", model="m"), probe())
        assert info.value.kind == "connection"

    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(use())
        with pytest.raises(RuntimeError, match="event loop"):
            asyncio.run(use())
        first.run_until_complete(client.aclose())
    finally:
        first.close()
    asyncio.run(use())  # closed clients can be used again in a new loop
    asyncio.run(client.aclose())


def test_against_subprocess_simulator() -> None:
    args = ["--port", "0", "--slots", "4", "--latency", "0.01", "--rate-500", "0.3"]
    with SimulatorProcess([*args, "--seed", "2", "--log-level", "WARNING"]) as sim:

        async def main() -> list[CallResult]:
            async with fast_client(max_attempts=10) as client:
                return await asyncio.gather(
                    *(client.chat(endpoint(sim), probe(i)) for i in range(8))
                )

        results = asyncio.run(main())
    assert len(results) == 8 and all(r.finish_reason == "stop" for r in results)
