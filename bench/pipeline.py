"""Generation pipeline benchmark: one real worker process against the simulator at capacity.

Starts a throwaway database, the API, one `cgd worker` process with its DEFAULT settings (the
in-flight bound adapts; pass --inflight to pin a ceiling) and the simulated OpenAI server
(K slots × L seconds latency), submits a job sized for --seconds of ideal time (K/L calls/s, three
calls per GSM8K prompt) through the REST API and reports, clocked from job creation to completion:
answered calls/s (429s excluded) and % of capacity (K/L); the same over the worker's busy window
(first claim → last chunk); worker CPU ms per call (worker and its verifier processes), peak
worker RSS, max in flight seen by the server, the share of requests answered 429, time to the
first stored triplet, and the refine prompt's shared-prefix fraction (in the simulator's token
counts).

    .venv/bin/python bench/pipeline.py --slots 256 [--seconds 30] [--latency 0.5] [--runs 3]
    .venv/bin/python bench/pipeline.py --slots 64 --max-waiting 8   # a bounded queue: 429s
    .venv/bin/python bench/pipeline.py --slots 256 --runs 1 --timeline  # where capacity goes
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stack import bench_stack, peak_rss_kb  # noqa: E402

from cgd.simulator import SimulatorProcess  # noqa: E402

GSM8K = ROOT / "tests" / "data" / "gsm8k_train.jsonl"
CLK = os.sysconf("SC_CLK_TCK")


def tree_pids(pid: int) -> list[int]:
    out = [pid]
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        out += tree_pids(int(child))
    return out


def cpu_s(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except FileNotFoundError:
            pass
    return total / CLK


class Timeline(threading.Thread):
    """Samples the server's running/waiting gauges every 0.1 s (where the capacity goes)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.samples, self.stop = url, [], threading.Event()

    def run(self) -> None:
        with httpx.Client() as http:
            while not self.stop.wait(0.1):
                stats = http.get(f"{self.url}/sim/stats").json()
                self.samples.append((time.perf_counter(), stats["running"], stats["queued"]))

    def report(self, t0: float, slots: int) -> None:
        by_second: dict[int, list[tuple[int, int]]] = {}
        first = next((t - t0 for t, running, _ in self.samples if running), None)
        print(f"  first request at the server after {first} s")
        for t, running, queued in self.samples:
            by_second.setdefault(int(t - t0), []).append((running, queued))
        for sec, rows in sorted(by_second.items()):
            busy = statistics.mean(r for r, _ in rows) / slots
            print(f"  t={sec:3d}s busy={100 * busy:5.1f}% waiting={max(q for _, q in rows)}")


def one_run(args: argparse.Namespace, data: Path, n_items: int) -> dict[str, float]:
    broker = f"redis://127.0.0.1:6379/{1 + secrets.randbelow(15)}"
    redis.Redis.from_url(broker).flushdb()
    sim_args = ["--port", "0", "--slots", str(args.slots), "--latency", str(args.latency),
                "--latency-jitter", str(args.jitter), "--dataset", str(data)]  # fmt: skip
    if args.max_waiting is not None:
        sim_args += ["--max-waiting", str(args.max_waiting)]
    if args.no_metrics:
        sim_args.append("--no-metrics")
    env = {"CGD_BROKER_URL": broker}
    if args.inflight is not None:
        env["CGD_MAX_INFLIGHT_PER_ENDPOINT"] = str(args.inflight)
    if args.fixed:
        env["CGD_ADAPTIVE_CONCURRENCY"] = "false"
    if args.concurrency is not None:
        env["CGD_WORKER_CONCURRENCY"] = str(args.concurrency)
    with (
        SimulatorProcess(sim_args) as sim,
        bench_stack(args.port, **env) as stack,
    ):
        worker_log = Path(tempfile.mkdtemp()) / "worker.log"
        worker = stack.start("worker", log=worker_log)
        for _ in range(300):
            if b"ready." in worker_log.read_bytes():
                break
            time.sleep(0.1)
        client = stack.client()
        ds = client.post("/v1/datasets", files={"file": ("b.jsonl", data.read_bytes())})
        ds.raise_for_status()
        time.sleep(1.0)  # let the worker's verifier processes finish importing
        cpu0 = cpu_s(tree_pids(worker.pid))
        endpoint = {"temperature": 0.0, "max_tokens": 1024, "base_url": sim.base_url}
        chunk = {"chunk_size": args.chunk_size} if args.chunk_size else {}
        body = {
            "dataset_id": ds.json()["id"],
            "student": {**endpoint, "model": "student"},
            "teacher": {**endpoint, "model": "teacher"},
            **chunk,
        }
        timeline = Timeline(sim.url) if args.timeline else None
        if timeline is not None:
            timeline.start()
        t0 = time.perf_counter()
        job_id = client.post("/v1/jobs", json=body).json()["id"]
        posted = time.perf_counter() - t0
        first = None
        while True:
            if first is None:
                rows = client.get(
                    f"/v1/jobs/{job_id}/triplets", params={"status": "verified", "limit": 1}
                ).json()["data"]
                if rows:
                    first = time.perf_counter() - t0
            status = client.get(f"/v1/jobs/{job_id}").json()
            if status["status"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.05 if first is None else 0.2)
        wall = time.perf_counter() - t0
        if timeline is not None:
            timeline.stop.set()
            print(f"  POST /v1/jobs answered in {posted:.2f} s")
            timeline.report(t0, args.slots)
        cpu = cpu_s(tree_pids(worker.pid)) - cpu0
        stats = httpx.get(f"{sim.url}/sim/stats").json()
        rss = peak_rss_kb(worker.pid) / 1024
        assert status["counts"]["completed"] == n_items, status
        calls = stats["requests_total"]
        answered = stats["by_status"].get("200", 0)  # capacity used: 429s take no slot
        with psycopg.connect(stack.db_url) as c:
            started, finished = c.execute(
                "SELECT started_at, finished_at FROM jobs WHERE id = %s", (uuid.UUID(job_id),)
            ).fetchone()
            shared = c.execute(
                """SELECT avg((c.prompt_tokens + c.completion_tokens)::float / r.prompt_tokens)
                   FROM generations c JOIN generations r
                     ON r.job_id = c.job_id AND r.idx = c.idx AND r.sample = c.sample
                   WHERE c.job_id = %s AND c.stage = 'critique' AND r.stage = 'refine'""",
                (uuid.UUID(job_id),),
            ).fetchone()[0]
            if timeline is not None:  # where the job's last second went
                epoch = time.time() - (time.perf_counter() - t0)
                for label, sql in (
                    ("last call stored", "SELECT max(created_at) FROM generations WHERE job_id=%s"),
                    ("last item written", "SELECT max(updated_at) FROM job_items WHERE job_id=%s"),
                    ("last chunk done", "SELECT max(finished_at) FROM job_chunks WHERE job_id=%s"),
                    ("job finished", "SELECT finished_at FROM jobs WHERE id=%s"),
                ):
                    at = c.execute(sql, (uuid.UUID(job_id),)).fetchone()[0]
                    print(f"  {label}: t={at.timestamp() - epoch:.2f} s")
        busy = (finished - started).total_seconds()
        capacity = args.slots / args.latency
        return {
            "calls": calls,
            "wall_s": wall,
            "pct_capacity": 100 * answered / wall / capacity,  # job created → completed
            "pct_capacity_busy": 100 * answered / busy / capacity,
            "calls_per_s": answered / wall,
            "pct_429": 100 * stats["by_status"].get("429", 0) / calls,
            "cpu_ms_per_call": 1000 * cpu / calls,
            "peak_rss_mb": rss,
            "max_inflight": stats["max_inflight"],
            "first_triplet_s": first or float("nan"),
            "shared_prefix": shared,
        }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0, help="job size in ideal seconds")
    ap.add_argument("--calls", type=int, default=None, help="job size in calls (overrides)")
    ap.add_argument("--slots", type=int, default=256)
    ap.add_argument("--latency", type=float, default=0.5)
    ap.add_argument("--jitter", type=float, default=0.0)
    ap.add_argument("--max-waiting", type=int, default=None, help="simulator 429s past this queue")
    ap.add_argument("--no-metrics", action="store_true", help="simulator serves no /metrics")
    ap.add_argument("--inflight", type=int, default=None, help="CGD_MAX_INFLIGHT_PER_ENDPOINT")
    ap.add_argument("--fixed", action="store_true", help="no adaptation: always --inflight")
    ap.add_argument("--concurrency", type=int, default=None, help="CGD_WORKER_CONCURRENCY")
    ap.add_argument("--chunk-size", type=int, default=None, help="job chunk_size (default: API's)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeline", action="store_true", help="server utilisation per second")
    ap.add_argument("--port", type=int, default=0, help="API port (0: a free one)")
    args = ap.parse_args()
    if not args.port:  # a fixed default collides with anyone else's benchmark on the machine
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            args.port = sock.getsockname()[1]
    calls = args.calls or round(args.seconds * args.slots / args.latency)
    n_items = math.ceil(calls / 3)
    data = Path(tempfile.mkdtemp()) / "gsm8k.jsonl"
    lines = GSM8K.read_text().splitlines()
    data.write_text("\n".join((lines * 2)[:n_items]) + "\n")
    results = []
    for i in range(args.runs):
        r = one_run(args, data, n_items)
        results.append(r)
        print(f"run {i + 1}: " + ", ".join(f"{k}={v:.3g}" for k, v in r.items()), flush=True)
    print(
        "median: "
        + ", ".join(f"{k}={statistics.median(r[k] for r in results):.3g}" for k in results[0])
    )


if __name__ == "__main__":
    main()
