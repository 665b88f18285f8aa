"""Generation pipeline benchmark: one real worker process against the simulator at capacity.

Starts a throwaway database, the API, one `cgd worker` process and the simulated OpenAI server
(K slots × L seconds latency), submits a job of ceil(calls/3) GSM8K prompts through the REST API
and reports: calls/s and % of capacity (K/L), worker CPU ms per call (worker and its verifier
processes), peak worker RSS, max in flight seen by the server, time to the first stored triplet,
and the refine prompt's shared-prefix fraction (in the simulator's token counts).

    .venv/bin/python bench/pipeline.py [--calls 5000] [--slots 256] [--latency 0.5] [--runs 3]
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import statistics
import sys
import tempfile
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


def one_run(args: argparse.Namespace, data: Path, n_items: int) -> dict[str, float]:
    broker = f"redis://127.0.0.1:6379/{1 + secrets.randbelow(15)}"
    redis.Redis.from_url(broker).flushdb()
    sim_args = ["--port", "0", "--slots", str(args.slots), "--latency", str(args.latency),
                "--latency-jitter", str(args.jitter), "--dataset", str(data)]  # fmt: skip
    with (
        SimulatorProcess(sim_args) as sim,
        bench_stack(
            args.port,
            CGD_BROKER_URL=broker,
            CGD_MAX_INFLIGHT_PER_ENDPOINT=str(args.inflight),
            CGD_WORKER_CONCURRENCY=str(args.concurrency),
        ) as stack,
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
        body = {
            "dataset_id": ds.json()["id"],
            "student": {**endpoint, "model": "student"},
            "teacher": {**endpoint, "model": "teacher"},
            "chunk_size": args.chunk_size,
        }
        t0 = time.perf_counter()
        job_id = client.post("/v1/jobs", json=body).json()["id"]
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
            time.sleep(0.05 if first is None else 0.5)
        wall = time.perf_counter() - t0
        cpu = cpu_s(tree_pids(worker.pid)) - cpu0
        stats = httpx.get(f"{sim.url}/sim/stats").json()
        rss = peak_rss_kb(worker.pid) / 1024
        assert status["counts"]["completed"] == n_items, status
        calls = stats["requests_total"]
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
        busy = (finished - started).total_seconds()
        capacity = args.slots / args.latency
        return {
            "calls": calls,
            "calls_per_s": calls / busy,
            "pct_capacity": 100 * calls / busy / capacity,
            "end_to_end_calls_per_s": calls / wall,
            "cpu_ms_per_call": 1000 * cpu / calls,
            "peak_rss_mb": rss,
            "max_inflight": stats["max_inflight"],
            "first_triplet_s": first or float("nan"),
            "shared_prefix": shared,
        }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--slots", type=int, default=256)
    ap.add_argument("--latency", type=float, default=0.5)
    ap.add_argument("--jitter", type=float, default=0.0)
    ap.add_argument("--inflight", type=int, default=320, help="worker in-flight bound (K+margin)")
    ap.add_argument("--concurrency", type=int, default=4, help="chunks run at once")
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--port", type=int, default=8766)
    args = ap.parse_args()
    n_items = math.ceil(args.calls / 3)
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
