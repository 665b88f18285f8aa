"""Fairness benchmark (issue 11): two teams on one deployment, one worker process.

1. Team A's 20-item job alone: its completion time (submit → completed).
2. Team B queues `--b-jobs` jobs of `--b-items` items, then A submits the same 20-item job:
   A's completion time with B's backlog. Target: ≤ 2× the time alone.
3. B's four one-item jobs point at a hanging endpoint (the simulator with rate_hang=1: it
   answers GET /models, never a chat call), then A submits its job: A's completion time (target:
   within its time alone + 15 s), and how long B's jobs took to be `paused` (target: 60 s).
4. A one-item job on a slow but live server (90 s per call, `--slow-latency`): it must never be
   `paused`; its completion time (three calls, about 270 s; `--skip-slow` leaves it out).

Every setting is at its default unless an option names it (worker slots, team cap, request
timeout: the deployment's defaults are what a team meets).

    .venv/bin/python bench/fairness.py [--b-jobs 100] [--b-items 50] [--latency 0.2]
        [--concurrency N] [--team-cap N] [--timeout S] [--slow-latency 90] [--skip-slow]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stack import bench_stack  # noqa: E402

from cgd.simulator import SimulatorProcess  # noqa: E402

GSM8K = ROOT / "tests" / "data" / "gsm8k_train.jsonl"


def upload(c: httpx.Client, n: int) -> str:
    lines = GSM8K.read_text().splitlines()[:n]
    r = c.post("/v1/datasets", files={"file": ("d.jsonl", ("\n".join(lines) + "\n").encode())})
    r.raise_for_status()
    return str(r.json()["id"])


def submit(c: httpx.Client, ds: str, sim: SimulatorProcess) -> str:
    body = {
        "dataset_id": ds,
        "student": {"base_url": sim.base_url, "model": "student", "temperature": 0.0},
        "teacher": {"base_url": sim.base_url, "model": "teacher", "temperature": 0.0},
    }
    r = c.post("/v1/jobs", json=body)
    r.raise_for_status()
    return str(r.json()["id"])


def wait(c: httpx.Client, job: str, until: tuple[str, ...], timeout_s: float = 600) -> dict:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        status = c.get(f"/v1/jobs/{job}").json()
        if status["status"] in until:
            return status  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise RuntimeError(f"job {job} not {until} after {timeout_s}s")


def timed_job(c: httpx.Client, ds: str, sim: SimulatorProcess) -> tuple[float, float]:
    """(seconds until a poll saw it completed, seconds until the job finished in the database).
    The first includes up to 0.5 s of the status cache: on a ~1 s job that alone can read as
    1.5x, so ratios use the second."""
    started, wall = time.monotonic(), time.time()
    job = submit(c, ds, sim)
    status = wait(c, job, ("completed",))
    seen = time.monotonic() - started
    while status["finished_at"] is None:  # every item is done; the chunk's end is a moment later
        time.sleep(0.05)
        status = c.get(f"/v1/jobs/{job}").json()
    finished = datetime.fromisoformat(status["finished_at"]).timestamp() - wall
    return seen, finished


def median_pair(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--b-jobs", type=int, default=100)
    ap.add_argument("--b-items", type=int, default=50)
    ap.add_argument("--a-items", type=int, default=20)
    ap.add_argument("--latency", type=float, default=0.2, help="simulator seconds per call")
    ap.add_argument("--concurrency", type=int, help="CGD_WORKER_CONCURRENCY (default: 4)")
    ap.add_argument("--team-cap", type=int, help="CGD_TEAM_MAX_RUNNING_CHUNKS (default: 8)")
    ap.add_argument("--timeout", type=float, help="CGD_LLM_TIMEOUT_S (default: 600)")
    ap.add_argument("--slow-latency", type=float, default=90.0, help="slow server: s per call")
    ap.add_argument("--skip-slow", action="store_true")
    ap.add_argument("--port", type=int, default=8771)
    args = ap.parse_args()
    env = {}
    for name, value in (
        ("CGD_WORKER_CONCURRENCY", args.concurrency),
        ("CGD_TEAM_MAX_RUNNING_CHUNKS", args.team_cap),
        ("CGD_LLM_TIMEOUT_S", args.timeout),
    ):
        if value is not None:
            env[name] = str(value)
    print(f"settings other than the defaults: {env or 'none'}")
    sim_args = ["--port", "0", "--slots", "512", "--latency", str(args.latency)]
    with (
        bench_stack(args.port, **env) as stack,
        SimulatorProcess([*sim_args, "--dataset", str(GSM8K)]) as sim,
        SimulatorProcess([*sim_args, "--rate-hang", "1.0", "--hang-s", "600"]) as hanging,
        SimulatorProcess(["--port", "0", "--latency", str(args.slow_latency)]) as slow,
    ):
        key_b = stack.cgd("admin", "create-key", "--team", "b").strip().splitlines()[-1]
        a = stack.client()
        b = httpx.Client(base_url=stack.base, headers={"Authorization": f"Bearer {key_b}"})
        b.timeout = httpx.Timeout(120)
        stack.start("worker")
        time.sleep(5)  # worker ready
        ds_a = upload(a, args.a_items)
        timed_job(a, ds_a, sim)  # warm-up: imports, verifier processes, connections
        alone = median_pair([timed_job(a, ds_a, sim) for _ in range(3)])
        ds_b = upload(b, args.b_items)
        started = time.monotonic()
        b_jobs = [submit(b, ds_b, sim) for _ in range(args.b_jobs)]
        queued_s = time.monotonic() - started  # includes each job's preflight
        with_backlog = timed_job(a, ds_a, sim)
        b_left = sum(b.get(f"/v1/jobs/{j}").json()["status"] != "completed" for j in b_jobs)
        for j in b_jobs:  # clear the backlog before the next scenario
            b.post(f"/v1/jobs/{j}/cancel")
        ds_b1 = upload(b, 1)
        started = time.monotonic()
        hung = [submit(b, ds_b1, hanging) for _ in range(4)]
        time.sleep(1.0)  # B's calls are out: all four slots are B's
        beside_hang = timed_job(a, ds_a, sim)
        for j in hung:
            wait(b, j, ("paused",))
        paused_s = time.monotonic() - started
        errors = {b.get(f"/v1/jobs/{j}").json()["paused"]["error"][:60] for j in hung}
        for j in hung:
            b.post(f"/v1/jobs/{j}/cancel")
        slow_told = "skipped"
        if not args.skip_slow:
            slow_told = slow_job(b, ds_b1, slow)

        def told(t: tuple[float, float]) -> str:
            return (
                f"finished after {t[1]:.2f} s = {t[1] / alone[1]:.2f}x alone"
                f" (a poll saw it after {t[0]:.2f} s = {t[0] / alone[0]:.2f}x)"
            )

        print(f"A alone: finished after {alone[1]:.2f} s (a poll saw it after {alone[0]:.2f} s)")
        print(
            f"A behind B's {args.b_jobs} jobs x {args.b_items} items (queued in {queued_s:.1f} s,"
            f" {b_left} still unfinished when A completed): {told(with_backlog)}"
        )
        print(
            f"A beside B's 4 jobs on a hanging endpoint: {told(beside_hang)}"
            f" (+{beside_hang[1] - alone[1]:.2f} s); all 4 of B's jobs paused {paused_s:.1f} s"
            f" after their submission: {sorted(errors)}"
        )
        print(f"B's one-item job on a live server at {args.slow_latency:g} s per call: {slow_told}")


def slow_job(c: httpx.Client, ds: str, sim: SimulatorProcess) -> str:
    """Poll every second until it completes; say whether it was ever paused."""
    started = time.monotonic()
    job = submit(c, ds, sim)
    paused_seen = 0
    while True:
        status = c.get(f"/v1/jobs/{job}").json()
        paused_seen += status["status"] == "paused"
        if status["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(1.0)
    took = time.monotonic() - started
    return f"{status['status']} after {took:.0f} s, seen paused in {paused_seen} polls"


if __name__ == "__main__":
    main()
