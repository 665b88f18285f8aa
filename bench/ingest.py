"""Ingestion benchmark: a 1,000,000-row JSONL (~300 MB) uploaded over HTTP to a real `cgd api`.

Reports end-to-end rows/s (request start → 201, i.e. committed in Postgres) and the API process's
peak-RSS growth during the upload. Targets (PERFORMANCE.md): ≥ 50,000 rows/s, ≤ 150 MB growth.

    .venv/bin/python bench/ingest.py [--rows 1000000] [--runs 3]

It creates a throwaway database on the local Postgres, starts the API on it, and drops it after.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import psycopg

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("CGD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def make_file(path: Path, rows: int) -> int:
    """GSM8K-shaped rows of ~300 bytes with distinct text."""
    words = [
        "apples",
        "baskets",
        "trains",
        "minutes",
        "dollars",
        "marbles",
        "pencils",
        "cookies",
        "tickets",
        "miles",
    ]
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


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def reset_peak_rss(pid: int) -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0).
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def start_api(db_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CGD_DATABASE_URL": db_url, "CGD_HOME": tempfile.mkdtemp()}
    env.pop("CGD_BROKER_URL", None)
    subprocess.run(
        [sys.executable, "-m", "cgd.cli", "migrate"], env=env, check=True, capture_output=True
    )
    key = (
        subprocess.run(
            [sys.executable, "-m", "cgd.cli", "admin", "create-key", "--team", "bench"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cgd.cli", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.key = key  # type: ignore[attr-defined]
    return proc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()

    db = f"cgd_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{db}"')
    db_url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{db}"
    tmp = Path(tempfile.mkdtemp())
    data = tmp / "bench.jsonl"
    size = make_file(data, args.rows)
    print(f"file: {args.rows} rows, {size / 1e6:.0f} MB")
    proc = start_api(db_url, args.port)
    try:
        headers = {"Authorization": f"Bearer {proc.key}"}  # type: ignore[attr-defined]
        rates, growths = [], []
        for run in range(args.runs):
            reset_peak_rss(proc.pid)
            base = peak_rss_kb(proc.pid)
            start = time.perf_counter()
            with open(data, "rb") as f:
                r = httpx.post(
                    f"http://127.0.0.1:{args.port}/v1/datasets",
                    files={"file": ("bench.jsonl", f)},
                    headers=headers,
                    timeout=600,
                )
            elapsed = time.perf_counter() - start
            assert r.status_code == 201, r.text[:500]
            assert r.json()["num_items"] == args.rows
            growth_mb = (peak_rss_kb(proc.pid) - base) / 1024
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
    finally:
        proc.terminate()
        proc.wait(10)
        data.unlink()
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
