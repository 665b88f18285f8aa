"""The simulated OpenAI-compatible server, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from cgd.simulator import (
    SimConfig,
    SimState,
    SimulatorProcess,
    classify,
    final_answer,
    last_boxed,
    normalise_answer,
    run_simulator,
    wrong_answer,
)
from cgd.templates import get_template, parse_verdict
from tests.conftest import data_file

pytestmark = pytest.mark.timeout(60)

GSM8K = data_file("gsm8k_train.jsonl")
TEMPLATE = get_template("cgd")


@pytest.fixture
def gsm8k_slice(tmp_path: Path) -> tuple[Path, list[dict[str, str]]]:
    """The first rows of GSM8K train, copied to a temporary JSONL file."""
    rows = [orjson.loads(line) for line in GSM8K.read_bytes().splitlines()[:3]]
    path = tmp_path / "gsm8k.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    return path, rows


def reference(row: dict[str, str]) -> str:
    return row["answer"].rsplit("####", 1)[1].strip().replace(",", "")


def sim_config(**kw: Any) -> SimConfig:
    return SimConfig(port=0, slots=kw.pop("slots", 8), latency_s=kw.pop("latency_s", 0.01), **kw)


async def post(
    session: aiohttp.ClientSession, url: str, messages: list[dict[str, str]], **params: Any
) -> tuple[int, dict[str, Any], Any]:
    body = {"model": "m", "messages": messages, **params}
    async with session.post(f"{url}/v1/chat/completions", json=body) as resp:
        return resp.status, dict(resp.headers), await resp.json()


def run(config: SimConfig, body: Callable[[str, aiohttp.ClientSession], Awaitable[None]]) -> None:
    """Run ``body(url, session)`` against an in-process simulator."""

    async def main() -> None:
        async with run_simulator(config) as sim, aiohttp.ClientSession() as session:
            await body(sim.url, session)

    asyncio.run(main())


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        assert resp.status == 200
        return await resp.json()


async def set_config(session: aiohttp.ClientSession, url: str, **patch: Any) -> Any:
    async with session.post(f"{url}/sim/config", json=patch) as resp:
        return resp.status, await resp.json()


# -- pure helpers --------------------------------------------------------------------------------


def test_answer_helpers() -> None:
    assert last_boxed(r"a \boxed{1} then \boxed{\frac{1}{2}} end") == r"\frac{1}{2}"
    assert last_boxed("no box") is None
    assert normalise_answer("$1,000.$") == normalise_answer("1000.0") == "1000"
    assert final_answer("work\n#### 1,234") == "1234"
    assert final_answer(27.0) == "27"
    assert final_answer(r"so \boxed{\frac{14}{3}}") == r"\frac{14}{3}"
    assert wrong_answer("72") == "73"
    assert wrong_answer("0.5") == "1.5"
    assert normalise_answer(wrong_answer(r"\text{Evelyn}")) != normalise_answer(r"\text{Evelyn}")


def test_classify_follows_templates() -> None:
    q, a, c = "What is 2+2?", r"It is \boxed{4}", "Fine.\nConclusion: right"
    assert classify(TEMPLATE.probe(q)).stage == "probe"
    crit = classify(TEMPLATE.critique(q, a))
    assert (crit.stage, crit.question, crit.student_answer) == ("critique", q, a)
    ref = classify(TEMPLATE.refine(q, a, c))
    assert (ref.stage, ref.question) == ("refine", q)
    other = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    assert classify(other).stage == "other"


# -- HTTP ----------------------------------------------------------------------------------------


def test_response_shape_and_models() -> None:
    async def body(url: str, s: aiohttp.ClientSession) -> None:
        models = await get_json(s, f"{url}/v1/models")
        assert models["object"] == "list" and models["data"][0]["object"] == "model"
        status, _, data = await post(s, url, TEMPLATE.probe("What is 6 times 7?"))
        assert status == 200
        assert data["object"] == "chat.completion" and data["model"] == "m"
        assert data["id"].startswith("chatcmpl-") and isinstance(data["created"], int)
        choice = data["choices"][0]
        assert choice["message"]["role"] == "assistant"
        assert choice["finish_reason"] == "stop"
        assert last_boxed(choice["message"]["content"]) is not None
        usage = data["usage"]
        assert usage["completion_tokens"] >= 1 and usage["prompt_tokens"] >= 1
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    run(sim_config(), body)


def test_bad_requests() -> None:
    async def body(url: str, s: aiohttp.ClientSession) -> None:
        async with s.post(f"{url}/v1/chat/completions", data=b"{nope") as resp:
            assert resp.status == 400
        status, _, _ = await post(s, url, [])
        assert status == 400
        status, _, err = await post(s, url, TEMPLATE.probe("q"), model="other")
        assert status == 404 and "does not exist" in err["message"]
        assert (await set_config(s, url, slots=3))[0] == 400  # startup-only
        assert (await set_config(s, url, rate_500=2))[0] == 400  # invalid value
        assert (await set_config(s, url, rate_500=0.6, rate_429=0.6))[0] == 400  # sum > 1

    run(sim_config(served_models=["m"]), body)


def test_gsm8k_answers_are_deterministic(gsm8k_slice: tuple[Path, list[dict[str, str]]]) -> None:
    path, rows = gsm8k_slice

    async def body(url: str, s: aiohttp.ClientSession) -> None:
        for row in rows:
            q, ref = row["question"], reference(row)
            _, _, first = await post(s, url, TEMPLATE.probe(q))
            _, _, again = await post(s, url, TEMPLATE.probe(q))
            right = first["choices"][0]["message"]["content"]
            assert right == again["choices"][0]["message"]["content"]
            assert last_boxed(right) == ref
            # accuracy 0 for this request: the answer is wrong by one.
            await set_config(s, url, accuracy=0.0)
            _, _, bad = await post(s, url, TEMPLATE.probe(q))
            wrong = bad["choices"][0]["message"]["content"]
            assert last_boxed(wrong) == str(int(ref) + 1)
            await set_config(s, url, accuracy=1.0)
            for answer, verdict in ((right, "right"), (wrong, "wrong")):
                _, _, crit = await post(s, url, TEMPLATE.critique(q, answer))
                text = crit["choices"][0]["message"]["content"]
                assert text.splitlines()[-1] == f"Conclusion: {verdict}"
                assert parse_verdict(text) == verdict
                _, _, refined = await post(s, url, TEMPLATE.refine(q, answer, text))
                assert last_boxed(refined["choices"][0]["message"]["content"]) == ref

    run(sim_config(datasets=[path], accuracy=1.0), body)


def test_accuracy_is_a_stable_fraction_and_depends_on_seed() -> None:
    async def body(url: str, s: aiohttp.ClientSession) -> None:
        questions = [f"Unknown question number {i}?" for i in range(60)]
        answers = [await post(s, url, TEMPLATE.probe(q)) for q in questions]
        crits = [
            await post(s, url, TEMPLATE.critique(q, a[2]["choices"][0]["message"]["content"]))
            for q, a in zip(questions, answers, strict=True)
        ]
        right = [parse_verdict(c[2]["choices"][0]["message"]["content"]) == "right" for c in crits]
        assert 15 <= sum(right) <= 45  # about half at accuracy 0.5
        seeded = [await post(s, url, TEMPLATE.probe(q), seed=7) for q in questions[:20]]
        texts = [a[2]["choices"][0]["message"]["content"] for a in answers[:20]]
        assert texts != [a[2]["choices"][0]["message"]["content"] for a in seeded]

    run(sim_config(accuracy=0.5, latency_s=0.0), body)


def test_no_verdict_rate() -> None:
    async def body(url: str, s: aiohttp.ClientSession) -> None:
        _, _, crit = await post(s, url, TEMPLATE.critique("What is 1+1?", r"\boxed{2}"))
        assert parse_verdict(crit["choices"][0]["message"]["content"]) is None

    run(sim_config(no_verdict_rate=1.0), body)


def test_capacity_slots_and_fifo_queue() -> None:
    async def body(url: str, s: aiohttp.ClientSession) -> None:
        started = time.monotonic()
        results = await asyncio.gather(
            *(post(s, url, TEMPLATE.probe(f"question {i}")) for i in range(6))
        )
        elapsed = time.monotonic() - started
        assert all(status == 200 for status, _, _ in results)
        stats = await get_json(s, f"{url}/sim/stats")
        assert stats["max_running"] == 2  # never more than K
        assert stats["max_inflight"] == 6  # the rest queued, none rejected
        assert stats["running"] == stats["queued"] == stats["inflight"] == 0
        assert elapsed >= 3 * 0.15 * 0.95  # three waves of two

    run(sim_config(slots=2, latency_s=0.15), body)


def test_max_tokens_truncates_naturally_and_stop_strings() -> None:
    async def body(url: str, s: aiohttp.ClientSession) -> None:
        _, _, data = await post(s, url, TEMPLATE.probe("q"), max_tokens=5)
        assert data["choices"][0]["finish_reason"] == "length"
        assert data["usage"]["completion_tokens"] == 5
        assert len(data["choices"][0]["message"]["content"]) == 20
        _, _, data = await post(s, url, TEMPLATE.probe("q"), stop=["Step 2"])
        text = data["choices"][0]["message"]["content"]
        assert "Step 1" in text and "Step 2" not in text
        assert data["choices"][0]["finish_reason"] == "stop"

    run(sim_config(), body)


def test_runtime_faults() -> None:
    async def body(url: str, s: aiohttp.ClientSession) -> None:
        msgs = TEMPLATE.probe("q")
        assert (await post(s, url, msgs))[0] == 200
        await set_config(s, url, rate_429=1.0, retry_after_s=3)
        status, headers, err = await post(s, url, msgs)
        assert status == 429 and headers["Retry-After"] == "3" and err["object"] == "error"
        await set_config(s, url, rate_429=0.0, rate_500=1.0)
        assert (await post(s, url, msgs))[0] == 500
        await set_config(s, url, rate_500=0.0, rate_truncate=1.0)
        _, _, data = await post(s, url, msgs)
        assert data["choices"][0]["finish_reason"] == "length"
        await set_config(s, url, rate_truncate=0.0, rate_drop=1.0)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(s, url, msgs)
        await set_config(s, url, rate_drop=0.0, rate_hang=1.0)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(post(s, url, msgs), 0.2)
        await set_config(s, url, rate_hang=0.0)
        assert (await post(s, url, msgs))[0] == 200
        stats = await get_json(s, f"{url}/sim/stats")
        assert stats["faults"] == {"429": 1, "500": 1, "truncate": 1, "drop": 1, "hang": 1}
        assert stats["by_status"]["429"] == 1 and stats["by_status"]["500"] == 1

    run(sim_config(), body)


def test_poison_and_fault_filters() -> None:
    async def body(url: str, s: aiohttp.ClientSession) -> None:
        for _ in range(3):
            assert (await post(s, url, TEMPLATE.probe("this is POISON here")))[0] == 500
        assert (await post(s, url, TEMPLATE.probe("fine question")))[0] == 200
        assert (await post(s, url, TEMPLATE.critique("fine question", "x")))[0] == 500
        # Faults restricted to model "teacher": model "m" gets no random faults.
        await set_config(s, url, fault_stages=[], fault_models=["teacher"])
        assert (await post(s, url, TEMPLATE.critique("fine question", "x")))[0] == 200
        assert (await post(s, url, TEMPLATE.probe("q"), model="teacher"))[0] == 500

    run(sim_config(poison=["POISON"], rate_500=1.0, fault_stages=["critique"]), body)


def test_stats_duplicates_recorded_params_and_reset() -> None:
    async def body(url: str, s: aiohttp.ClientSession) -> None:
        msgs = TEMPLATE.probe("same question")
        for _ in range(3):
            await post(s, url, msgs, temperature=0.3, top_p=0.9, max_tokens=100, seed=1)
        stats = await get_json(s, f"{url}/sim/stats")
        assert stats["requests_total"] == 3 and stats["duplicates"] == 2
        assert stats["by_stage_model"] == {"probe": {"m": 3}}
        assert len(stats["recent_requests"]) == 2  # record_last
        assert stats["recent_requests"][-1]["params"] == {
            "model": "m",
            "temperature": 0.3,
            "top_p": 0.9,
            "max_tokens": 100,
            "seed": 1,
        }
        async with s.post(f"{url}/sim/reset") as resp:
            assert resp.status == 200
        stats = await get_json(s, f"{url}/sim/stats")
        assert stats["requests_total"] == 0 and stats["duplicates"] == 0
        await set_config(s, url, rate_500=1.0)
        async with s.post(f"{url}/sim/reset?config=true"):
            pass
        assert (await get_json(s, f"{url}/sim/config"))["rate_500"] == 0.0

    run(sim_config(record_last=2), body)


def test_api_key_required_and_masked() -> None:
    async def body(url: str, s: aiohttp.ClientSession) -> None:
        assert (await post(s, url, TEMPLATE.probe("q")))[0] == 401
        auth = {"Authorization": "Bearer sk-sim"}
        body_ = {"model": "m", "messages": TEMPLATE.probe("q")}
        async with s.post(f"{url}/v1/chat/completions", json=body_, headers=auth) as resp:
            assert resp.status == 200
        config = await get_json(s, f"{url}/sim/config")
        assert "sk-sim" not in orjson.dumps(config).decode()

    run(sim_config(api_key="sk-sim"), body)


def test_subprocess_entry_point(gsm8k_slice: tuple[Path, list[dict[str, str]]]) -> None:
    path, rows = gsm8k_slice
    args = ["--port", "0", "--slots", "4", "--latency", "0.01", "--dataset", str(path)]
    with SimulatorProcess([*args, "--accuracy", "1", "--log-level", "WARNING"]) as sim:
        assert sim.url.startswith("http://127.0.0.1:")

        async def main() -> None:
            async with aiohttp.ClientSession() as s:
                status, _, data = await post(s, sim.url, TEMPLATE.probe(rows[0]["question"]))
                assert status == 200
                assert last_boxed(data["choices"][0]["message"]["content"]) == reference(rows[0])

        asyncio.run(main())
    assert sim.proc.returncode == 0  # SIGTERM is a clean shutdown


def test_latency_jitter_keeps_the_mean() -> None:
    state = SimState(SimConfig(latency_s=0.5, latency_jitter=0.2))
    samples = [state.latency() for _ in range(2000)]
    assert min(samples) >= 0.4 and max(samples) <= 0.6
    assert sum(samples) / len(samples) == pytest.approx(0.5, abs=0.01)
    assert SimState(SimConfig(latency_s=0.5)).latency() == 0.5
