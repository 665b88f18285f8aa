"""Ingestion benchmark: a 1,000,000-row JSONL (~300 MB) uploaded over HTTP to a real `cgd api`.

Reports end-to-end rows/s (request start → 201, i.e. committed in Postgres) and the API process's
peak-RSS growth during the upload. Targets (docs/performance.md): ≥ 50,000 rows/s, ≤ 150 MB growth.

    .venv/bin/python bench/ingest.py [--rows 1000000] [--runs 3]

It creates a throwaway database on the local Postgres, starts the API on it, and drops it after.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import orjson
from stack import bench_stack, peak_rss_kb, reset_peak_rss


def make_file(path: Path, rows: int) -> int:
    """GSM8K-shaped rows of ~300 bytes with distinct text."""
    words = "apples baskets trains minutes dollars marbles pencils cookies tickets miles".split()
    with open(path, "wb") as f:
        for i in range(rows):
            w = words[i % len(words)]
            q = (
                f"Problem {i}: Natalia sold {i % 97} {w} to her friends in April, and then she "
                f"sold half as many {w} in May. How many {w} did Natalia sell altogether in "
                f"April and May if each costs {i % 13} dollars?"
            )
            a = f"She sold {i % 97}/2 more in May, so the total is computed step by step.\n#### {i}"
            f.write(orjson.dumps({"question": q, "answer": a}) + b"\n")
    return path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp())
    data = tmp / "bench.jsonl"
    size = make_file(data, args.rows)
    print(f"file: {args.rows} rows, {size / 1e6:.0f} MB")
    with bench_stack(args.port) as stack:
        headers = {"Authorization": f"Bearer {stack.key}"}
        rates, growths = [], []
        for run in range(args.runs):
            reset_peak_rss(stack.api_pid)
            base = peak_rss_kb(stack.api_pid)
            start = time.perf_counter()
            with open(data, "rb") as f:
                r = httpx.post(
                    f"{stack.base}/v1/datasets",
                    files={"file": ("bench.jsonl", f)},
                    headers=headers,
                    timeout=600,
                )
            elapsed = time.perf_counter() - start
            assert r.status_code == 201, r.text[:500]
            assert r.json()["num_items"] == args.rows
            growth_mb = (peak_rss_kb(stack.api_pid) - base) / 1024
            rates.append(args.rows / elapsed)
            growths.append(growth_mb)
            print(
                f"run {run + 1}: {elapsed:.1f} s, {args.rows / elapsed:,.0f} rows/s, "
                f"API peak RSS growth {growth_mb:.0f} MB"
            )
        print(
            f"median: {statistics.median(rates):,.0f} rows/s, "
            f"peak RSS growth {statistics.median(growths):.0f} MB (max {max(growths):.0f})"
        )
    data.unlink()


if __name__ == "__main__":
    main()
