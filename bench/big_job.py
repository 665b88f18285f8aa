"""Big-job benchmark (issue 11): a 1M-item dataset with samples_per_prompt=4.

Creates a throwaway database and the API, uploads `--items` synthetic prompts, then times
`POST /v1/jobs` (target ≤ 10 s). Starts the simulator and one worker so the job runs, and while
it runs measures job status: `GET /v1/jobs/{id}` under wrk (the API answers from a 1 s cache
between recomputes) and the status computation itself (`cgd.jobs.ops.job_status`, uncached,
in this process). Target: p99 ≤ 100 ms.

    .venv/bin/python bench/big_job.py [--items 1000000] [--samples 4] [--seconds 15]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stack import bench_stack  # noqa: E402

from cgd.db.engine import make_engine, make_sessionmaker  # noqa: E402
from cgd.db.models import Job  # noqa: E402
from cgd.jobs import ops  # noqa: E402
from cgd.simulator import SimulatorProcess  # noqa: E402


def dataset(path: Path, n: int) -> None:
    with path.open("w") as f:
        for i in range(n):
            f.write(f'{{"prompt": "What is {i} + {i}?", "answer": "{2 * i}"}}\n')


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--port", type=int, default=8772)
    args = ap.parse_args()
    with (
        bench_stack(args.port, CGD_WORKER_CONCURRENCY="4") as stack,
        SimulatorProcess(["--port", "0", "--slots", "256", "--latency", "0.05"]) as sim,
    ):
        client = stack.client(timeout=1800)
        path = Path(stack.env["CGD_HOME"]) / "big.jsonl"
        dataset(path, args.items)
        started = time.monotonic()
        with path.open("rb") as f:
            ds = client.post("/v1/datasets", files={"file": ("big.jsonl", f)})
        ds.raise_for_status()
        print(f"upload of {args.items} items: {time.monotonic() - started:.1f} s")
        body = {
            "dataset_id": ds.json()["id"],
            # Several samples per prompt need a sampling student (greedy ones would be equal).
            "student": {"base_url": sim.base_url, "model": "student", "temperature": 0.7},
            "teacher": {"base_url": sim.base_url, "model": "teacher"},
            "verifier": "exact",
            "samples_per_prompt": args.samples,
        }
        started = time.monotonic()
        job = client.post("/v1/jobs", json=body)
        if job.status_code != 202:
            raise SystemExit(f"job creation answered {job.status_code}: {job.text}")
        create_s = time.monotonic() - started
        job_id = job.json()["id"]
        print(f"POST /v1/jobs ({args.items} items x {args.samples} samples): {create_s:.2f} s")
        stack.start("worker")
        while True:
            r = client.get(f"/v1/jobs/{job_id}")
            if r.status_code != 200:
                print(f"status answered {r.status_code}: {r.text[:300]}")
            elif r.json()["counts"]["completed"] >= 1000:
                break
            time.sleep(1)
        out = subprocess.run(
            ["wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds}s", "--latency",
             "-H", f"Authorization: Bearer {stack.key}", f"{stack.base}/v1/jobs/{job_id}"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        p99 = re.search(r"99%\s+([\d.]+)(ms|s|us)", out)
        assert rps and p99, out
        scale = {"ms": 1.0, "s": 1000.0, "us": 0.001}[p99.group(2)]
        print(
            f"GET /v1/jobs/{{id}} while running, {args.connections} connections: "
            f"{float(rps.group(1)):.0f} req/s, p99 {float(p99.group(1)) * scale:.1f} ms"
        )
        engine = make_engine(stack.env["CGD_DATABASE_URL"])
        sm = make_sessionmaker(engine)
        times = []
        for _ in range(50):
            t = time.perf_counter()
            with sm() as s:
                status = ops.job_status(s, s.get(Job, uuid.UUID(job_id)))
            times.append((time.perf_counter() - t) * 1000)
        engine.dispose()
        times.sort()
        print(
            f"status computed (uncached, 50 times while running, {status.counts.completed} "
            f"items done): median {statistics.median(times):.1f} ms, "
            f"p99 {times[int(len(times) * 0.99) - 1]:.1f} ms"
        )


if __name__ == "__main__":
    main()
