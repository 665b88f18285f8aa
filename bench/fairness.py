"""Fairness benchmark (issue 11): two teams on one deployment, one worker process.

1. Team A's 20-item job alone: its completion time (submit → completed).
2. Team B queues `--b-jobs` jobs of `--b-items` items, then A submits the same 20-item job:
   A's completion time with B's backlog. Target: ≤ 2× the time alone.
3. B's four one-item jobs point at a hanging endpoint (the simulator with rate_hang=1), then A
   submits its job: A's completion time (target: unaffected), and how long B's jobs took to be
   `paused`.

    .venv/bin/python bench/fairness.py [--b-jobs 100] [--b-items 50] [--latency 0.2]
        [--concurrency 4] [--team-cap 3] [--timeout 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
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


def wait(c: httpx.Client, job: str, until: tuple[str, ...], timeout_s: float = 600) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if c.get(f"/v1/jobs/{job}").json()["status"] in until:
            return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError(f"job {job} not {until} after {timeout_s}s")


def timed_job(c: httpx.Client, ds: str, sim: SimulatorProcess) -> float:
    started = time.monotonic()
    job = submit(c, ds, sim)
    wait(c, job, ("completed",))
    return time.monotonic() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--b-jobs", type=int, default=100)
    ap.add_argument("--b-items", type=int, default=50)
    ap.add_argument("--a-items", type=int, default=20)
    ap.add_argument("--latency", type=float, default=0.2, help="simulator seconds per call")
    ap.add_argument("--concurrency", type=int, default=4, help="worker slots")
    ap.add_argument("--team-cap", type=int, default=3, help="CGD_TEAM_MAX_RUNNING_CHUNKS")
    ap.add_argument("--timeout", type=float, default=5.0, help="CGD_LLM_TIMEOUT_S")
    ap.add_argument("--port", type=int, default=8771)
    args = ap.parse_args()
    env = {
        "CGD_WORKER_CONCURRENCY": str(args.concurrency),
        "CGD_TEAM_MAX_RUNNING_CHUNKS": str(args.team_cap),
        "CGD_LLM_TIMEOUT_S": str(args.timeout),
        "CGD_PREFLIGHT_TIMEOUT_S": "2",
        "CGD_SWEEP_INTERVAL_S": "2",
    }
    sim_args = ["--port", "0", "--slots", "512", "--latency", str(args.latency)]
    with (
        bench_stack(args.port, **env) as stack,
        SimulatorProcess([*sim_args, "--dataset", str(GSM8K)]) as sim,
        SimulatorProcess([*sim_args, "--rate-hang", "1.0", "--hang-s", "600"]) as hanging,
    ):
        key_b = stack.cgd("admin", "create-key", "--team", "b").strip().splitlines()[-1]
        a = stack.client()
        b = httpx.Client(base_url=stack.base, headers={"Authorization": f"Bearer {key_b}"})
        b.timeout = httpx.Timeout(120)
        stack.start("worker")
        time.sleep(5)  # worker ready
        ds_a = upload(a, args.a_items)
        timed_job(a, ds_a, sim)  # warm-up: imports, verifier processes, connections
        alone = statistics.median(timed_job(a, ds_a, sim) for _ in range(3))
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
        beside_hang = timed_job(a, ds_a, sim)
        for j in hung:
            wait(b, j, ("paused",))
        paused_s = time.monotonic() - started
        print(f"A alone: {alone:.2f} s")
        print(
            f"A behind B's {args.b_jobs} jobs x {args.b_items} items (queued in {queued_s:.1f} s,"
            f" {b_left} still unfinished when A completed): {with_backlog:.2f} s"
            f" = {with_backlog / alone:.2f}x alone"
        )
        print(
            f"A beside B's 4 jobs on a hanging endpoint: {beside_hang:.2f} s"
            f" = {beside_hang / alone:.2f}x alone; all 4 of B's jobs paused"
            f" {paused_s:.1f} s after their submission (CGD_LLM_TIMEOUT_S={args.timeout:g})"
        )


if __name__ == "__main__":
    main()
