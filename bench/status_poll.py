"""Job-status polling benchmark: `GET /v1/jobs/{id}` under concurrent pollers (wrk).

Creates a throwaway database, starts `cgd api` (uvicorn, one process), submits a job of
`--items` GSM8K prompts (no worker: the status query reads the same item rows either way) and
hammers its status with wrk. Target (docs/performance.md): ≥ 300 req/s with p99 ≤ 100 ms.

    .venv/bin/python bench/status_poll.py [--items 5000] [--connections 32] [--seconds 15]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

from stack import bench_stack

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT / "tests" / "data" / "gsm8k_train.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--port", type=int, default=8768)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    with bench_stack(args.port) as stack:
        client = stack.client(timeout=60)
        lines = GSM8K.read_text().splitlines()[: args.items]
        ds = client.post("/v1/datasets", files={"file": ("d.jsonl", "\n".join(lines).encode())})
        ds.raise_for_status()
        sim = "http://127.0.0.1:9/v1"  # never called: no worker runs
        job = client.post(
            "/v1/jobs",
            json={
                "dataset_id": ds.json()["id"],
                "student": {"base_url": sim, "model": "s"},
                "teacher": {"base_url": sim, "model": "t"},
            },
        )
        job.raise_for_status()
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
            print(
                f"{args.items} items, {args.connections} connections: "
                f"{float(rps.group(1)):.0f} req/s, p99 {float(p99.group(1)) * scale:.1f} ms"
            )


if __name__ == "__main__":
    main()
