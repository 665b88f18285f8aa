"""A job you can watch (issue 27, part 4), end to end on the real API, worker and simulator:
while a job runs against a server failing 20% of calls, its status shows the retried calls by
reason and live quality over the items verified so far; when it ends, its token totals are
exactly what the server processed for it (kept, retried and failed attempts alike)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.test_jobs import create_job, job_body, upload_slice, wait_job
from tests.test_jobs import gsm8k_slice as gsm8k_slice  # noqa: F401  (fixture)
from tests.test_jobs import simulator as simulator  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

N = 60


def test_a_job_failing_20_percent_of_calls_shows_retries_quality_and_every_token(  # type: ignore[no-untyped-def]
    client,
    start_worker,
    simulator,  # noqa: F811
    gsm8k_slice,  # noqa: F811
) -> None:
    # 10% of calls answer 429 (retried, nothing processed) and 10% are cut at half their
    # tokens (processed, then retried with a larger budget, or failed when cut again). Slow
    # enough (8 slots, 50 ms a call) that the job is watched for several seconds. Not 500s:
    # two failed retries of them make the breaker probe the server (max_tokens=1 on the team's
    # prompt shape), a call for the team's breaker that no job is billed for and that would
    # make the server's counts differ from the job's by its tokens.
    sim = simulator("--slots", "8", "--latency", "0.05", "--rate-429", "0.1",
                    "--retry-after", "0", "--rate-truncate", "0.1", "--seed", "7")  # fmt: skip
    start_worker()
    ds = upload_slice(client, gsm8k_slice, N)
    job_id = create_job(client, job_body(ds, sim, chunk_size=20))

    seen_running: list[tuple[float, dict[str, Any]]] = []
    deadline = time.monotonic() + 180
    while True:
        asked = time.monotonic()
        status = client.get(f"/v1/jobs/{job_id}").json()
        if status["status"] != "running":
            if status["status"] in ("completed", "failed"):
                break
        else:
            seen_running.append((asked, status))
        assert time.monotonic() < deadline, status
        time.sleep(0.25)

    # While it ran: retries counted by reason, and quality over the items verified by then.
    live = [s for _, s in seen_running if s["retries"]["total"] > 0]
    assert live, "no retry was ever shown while the job ran"
    assert {"rate_limited", "truncated"} & set(live[-1]["retries"]["by_reason"])
    judged = [(t, s) for t, s in seen_running if s["counts"]["completed"] > 0]
    assert len(judged) >= 3, "the job was never watched running with items verified"
    for t, s in judged:
        q = s["quality"]
        assert q["initial_accuracy"] is not None and q["counts"]["verified"] > 0, s
        # Not stale by more than a poll (1 s, the dashboard's): it covers every item that was
        # verified a second before it was asked for.
        earlier = [e["counts"]["completed"] for te, e in seen_running if te <= t - 1.0]
        assert q["counts"]["verified"] >= max(earlier, default=0), (t, s)

    # When it ends: retries add up, and the totals are what the simulator processed.
    final = wait_job(client, job_id)
    r = final["retries"]
    assert r["total"] == sum(r["by_reason"].values()) == sum(r["by_stage"].values()) > 0
    assert r["by_reason"].get("rate_limited", 0) > 0 and r["by_reason"].get("truncated", 0) > 0
    served = httpx.get(f"{sim.url}/sim/stats").json()["tokens"]
    for kind in ("prompt", "completion"):
        processed = sum(per_model[kind] for per_model in served.values())
        assert final["tokens"][kind] == processed, (kind, final["tokens"], served)
        by_outcome = [
            t[kind] for stage in final["tokens"]["by_stage"].values() for t in stage.values()
        ]
        assert sum(by_outcome) == processed
    # Truncated attempts were counted: retried ones in the stage they were retried in.
    outcomes = {o for stage in final["tokens"]["by_stage"].values() for o in stage}
    assert "retried" in outcomes and "kept" in outcomes
    if final["errors"].get("truncated"):
        assert "failed" in outcomes
