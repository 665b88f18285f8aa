"""One team's hung server must not hold the slots another team needs, with default settings.

A real worker process, the real API, two simulators: one that accepts calls and never answers
them (it still answers GET /models, as a wedged vLLM's API process does), one healthy. Every
setting that decides the outcome is at its default: 4 slots per worker, a team cap of 8 running
chunks, 600 s request timeouts, the breaker and the hang watch as shipped.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from cgd.settings import Settings
from tests import test_jobs
from tests.test_jobs import create_job, job_body, upload_slice, wait_job
from tests.test_scheduling import team  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
gsm8k_slice = test_jobs.gsm8k_slice
simulator = test_jobs.simulator

# The test rig's short timeouts (tests/conftest.py) put back to the shipped defaults.
_DEFAULTS = (
    "worker_concurrency",
    "team_max_running_chunks",
    "max_inflight_per_endpoint",
    "llm_timeout_s",
    "llm_max_attempts",
    "llm_backoff_base_s",
    "llm_backoff_max_s",
    "breaker_failures",
    "breaker_probe_interval_s",
    "preflight_timeout_s",
    "hang_suspect_s",
    "hang_probe_timeout_s",
    "hang_probes",
    "hang_after_s",
    "stall_yield_s",
    "max_stalled_chunks",
)
DEFAULT_ENV = {
    f"CGD_{name.upper()}": str(Settings.model_fields[name].default) for name in _DEFAULTS
}


def _timed(client: Any, body: dict[str, Any], timeout_s: float = 120) -> float:
    started = time.monotonic()
    job = create_job(client, body)
    assert wait_job(client, job, timeout_s=timeout_s)["status"] == "completed"
    return time.monotonic() - started


def test_hung_server_of_one_team_does_not_stall_another(
    team,  # noqa: F811
    start_worker,
    simulator,
    gsm8k_slice,
) -> None:  # type: ignore[no-untyped-def]
    """B's four jobs on a server that never answers, then A's 20-item job on a healthy server:
    A finishes within its time alone + 15 s, and B's jobs are paused, naming the server, within
    60 s."""
    hung = simulator("--latency", "0.05", "--rate-hang", "1.0", "--hang-s", "600")
    good = simulator("--latency", "0.05")
    _, a = team()
    _, b = team()
    start_worker(**DEFAULT_ENV)
    ds_a = upload_slice(a, gsm8k_slice, 20)
    _timed(a, job_body(ds_a, good))  # warm-up: imports, verifier processes, connections
    alone = _timed(a, job_body(ds_a, good))
    ds_b = upload_slice(b, gsm8k_slice, 1)
    b_started = time.monotonic()
    b_jobs = [create_job(b, job_body(ds_b, hung)) for _ in range(4)]
    time.sleep(1.0)  # B's calls are out and all four slots are B's
    with_hung = _timed(a, job_body(ds_a, good))
    assert with_hung <= alone + 15, (
        f"A took {with_hung:.1f}s beside B's hung jobs, alone {alone:.1f}s"
    )
    for job in b_jobs:
        s = wait_job(b, job, timeout_s=60, until=lambda s: s["status"] == "paused")
        assert s["paused"]["endpoint"] == hung.base_url
        assert s["paused"]["error"].startswith("hung")
        assert s["counts"]["failed"] == 0
    assert time.monotonic() - b_started < 60


def test_slow_but_live_server_is_not_paused(
    team,  # noqa: F811
    start_worker,
    simulator,
    gsm8k_slice,
) -> None:  # type: ignore[no-untyped-def]
    """Calls that take 90 s each on a server that answers GET /models and shows progress on
    its /metrics: the job keeps running, and the first call's answer arrives."""
    slow = simulator("--latency", "90")
    _, a = team()
    start_worker(**DEFAULT_ENV)
    ds = upload_slice(a, gsm8k_slice, 2)
    job = create_job(a, job_body(ds, slow))
    deadline = time.monotonic() + 100
    while time.monotonic() < deadline:
        s = a.get(f"/v1/jobs/{job}").json()
        assert s["status"] != "paused", s["paused"]
        if s["by_stage"].get("probed", 0) + s["by_stage"].get("critiqued", 0) > 0:
            break
        time.sleep(1)
    else:
        pytest.fail(f"no call answered within 100 s: {s}")
    assert a.get(f"/v1/jobs/{job}").json()["status"] == "running"
    a.post(f"/v1/jobs/{job}/cancel")


def test_one_teams_failing_model_pauses_only_that_team(
    team,  # noqa: F811
    start_worker,
    simulator,
    gsm8k_slice,
) -> None:  # type: ignore[no-untyped-def]
    """Team A's model answers 500 on a server team B also uses (another model): A's job is
    paused, B's runs at the speed it has alone and is never paused."""
    sim = simulator("--latency", "0.05", "--rate-500", "1.0", "--fault-model", "a-model")
    _, a = team()
    _, b = team()
    start_worker(CGD_LLM_TIMEOUT_S="5", CGD_BREAKER_PROBE_INTERVAL_S="3600")
    ds_b = upload_slice(b, gsm8k_slice, 20)
    b_body = job_body(ds_b, sim)
    _timed(b, b_body)  # warm-up
    alone = _timed(b, b_body)
    ds_a = upload_slice(a, gsm8k_slice, 20)
    a_model = {"base_url": sim.base_url, "model": "a-model", "temperature": 0.0}
    a_job = create_job(a, job_body(ds_a, sim, student=a_model, teacher=a_model))
    started = time.monotonic()
    b_job = create_job(b, b_body)
    statuses = []
    while (s := b.get(f"/v1/jobs/{b_job}").json())["status"] not in ("completed", "failed"):
        statuses.append(s["status"])
        assert time.monotonic() - started < 60, s
        time.sleep(0.2)
    beside = time.monotonic() - started
    assert "paused" not in statuses
    assert beside <= 1.5 * alone + 2, f"B: {beside:.1f}s beside A's failures, {alone:.1f}s alone"
    s = wait_job(a, a_job, timeout_s=60, until=lambda s: s["status"] == "paused")
    assert s["paused"]["endpoint"] == sim.base_url and "server_error" in s["paused"]["error"]
