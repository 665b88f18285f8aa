"""Job-status polling benchmark: `GET /v1/jobs/{id}` under concurrent pollers (wrk).

Creates a throwaway database, starts `cgd api` (uvicorn, one process), submits a job of
`--items` GSM8K prompts and hammers its status with wrk. With `--worker`, the simulator and one
`cgd worker` run the job while it is polled (status then changes under the poll); without, the
job stays queued. Target (docs/performance.md): ≥ 300 req/s with p99 ≤ 100 ms.

    .venv/bin/python bench/status_poll.py [--items 5000] [--connections 32] [--seconds 15]
        [--worker]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stack import bench_stack  # noqa: E402

from cgd.simulator import SimulatorProcess  # noqa: E402

GSM8K = ROOT / "tests" / "data" / "gsm8k_train.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--port", type=int, default=8768)
    ap.add_argument("--worker", action="store_true", help="run the job while polling")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    with ExitStack() as stack_:
        stack = stack_.enter_context(bench_stack(args.port))
        sim = "http://127.0.0.1:9/v1"  # never called when no worker runs
        if args.worker:
            simulator = SimulatorProcess(["--port", "0", "--slots", "256", "--latency", "0.2"])
            sim = stack_.enter_context(simulator).base_url
        client = stack.client(timeout=60)
        lines = GSM8K.read_text().splitlines()[: args.items]
        ds = client.post("/v1/datasets", files={"file": ("d.jsonl", "\n".join(lines).encode())})
        ds.raise_for_status()
        job = client.post(
            "/v1/jobs",
            json={
                "dataset_id": ds.json()["id"],
                "student": {"base_url": sim, "model": "s"},
                "teacher": {"base_url": sim, "model": "t"},
                "preflight": args.worker,
            },
        )
        job.raise_for_status()
        if args.worker:
            stack.start("worker")
            url = f"/v1/jobs/{job.json()['id']}"
            while client.get(url).json()["counts"]["completed"] < 100:
                time.sleep(0.5)
        out = subprocess.run(
            ["wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds}s", "--latency",
             "-H", f"Authorization: Bearer {stack.key}",
             f"{stack.base}/v1/jobs/{job.json()['id']}"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        p99 = re.search(r"99%\s+([\d.]+)(ms|s|us)", out)
        print(out)
        if rps and p99:
            scale = {"ms": 1.0, "s": 1000.0, "us": 0.001}[p99.group(2)]
            status = client.get(f"/v1/jobs/{job.json()['id']}").json()
            print(
                f"{args.items} items ({status['status']}, {status['counts']['completed']} done "
                f"after the poll), {args.connections} connections: "
                f"{float(rps.group(1)):.0f} req/s, p99 {float(p99.group(1)) * scale:.1f} ms"
            )


if __name__ == "__main__":
    main()
