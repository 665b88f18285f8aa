"""Snapshot export benchmark through the real API: 200,000 triplets streamed as JSONL and Parquet.

Loads a snapshot of synthetic triplets (realistic lengths) straight into a throwaway Postgres
database, starts `cgd api` on it, and downloads `GET /v1/snapshots/{id}/export` in each format.
Reports rows/s (request start → last byte) and the API process's peak-RSS growth.
Target (PERFORMANCE.md): ≥ 50,000 rows/s, constant memory.

    .venv/bin/python bench/export_api.py [--rows 200000] [--runs 3]
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
import uuid
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("CGD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def load_snapshot(db_url: str, team_id: uuid.UUID, rows: int) -> uuid.UUID:
    sid, job = uuid.uuid4(), uuid.uuid4()
    prompt = "Natalia sold clips to 48 of her friends in April, and then half as many in May. " * 4
    answer = "Step: we compute the intermediate values one at a time and check them. " * 14
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO snapshots (id, team_id, name, status, job_ids, spec, num_items, stats,"
            " lineage, content_hash, created_at) VALUES (%s, %s, 'bench', 'ready', %s, '{}', %s,"
            " '{}', %s, %s, now())",
            (sid, team_id, f'["{job}"]', rows, f'{{"{job}": {{"job_id": "{job}"}}}}', "0" * 64),
        )
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY snapshot_rows (snapshot_id, pos, triplet_id, job_id, item_id, sample, split,"
                " prompt, reference, initial_response, critique, verdict, refined_response,"
                " initial_correct, refined_correct, status, error, truncated) FROM STDIN"
            ) as copy,
        ):
            for i in range(rows):
                copy.write_row(
                    (
                        sid,
                        i,
                        f"{job}:{i}:0",
                        str(job),
                        str(i),
                        0,
                        "train",
                        f"{i}: {prompt}",
                        f"#### {i}",
                        answer + f"\\boxed{{{i + 1}}}",
                        answer[:600] + "Conclusion: wrong",
                        "wrong",
                        answer + f"\\boxed{{{i}}}",
                        False,
                        True,
                        "verified",
                        None,
                        False,
                    )
                )
    return sid


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--port", type=int, default=8767)
    args = ap.parse_args()
    db = f"cgd_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{db}"')
    plain_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{db}"
    env = {
        **os.environ,
        "CGD_DATABASE_URL": plain_url.replace("postgresql://", "postgresql+psycopg://"),
        "CGD_HOME": tempfile.mkdtemp(),
        "CGD_LOG_LEVEL": "WARNING",
    }
    env.pop("CGD_BROKER_URL", None)
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "cgd.cli", *a], env=env, check=True, capture_output=True, text=True
    )
    run("migrate")
    key = run("admin", "create-key", "--team", "bench").stdout.strip().splitlines()[-1]
    with psycopg.connect(plain_url) as conn:
        team_id = conn.execute("SELECT id FROM teams WHERE name = 'bench'").fetchone()[0]
    sid = load_snapshot(plain_url, team_id, args.rows)
    api = subprocess.Popen(
        [sys.executable, "-m", "cgd.cli", "api", "--port", str(args.port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{args.port}"
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        for fmt, layout, extra in (
            ("jsonl", "messages", ""),
            ("parquet", "messages", ""),
            ("parquet", "messages", "&compression=lz4"),
            ("jsonl", "native", ""),
        ):
            rates, growth = [], []
            for _ in range(args.runs):
                Path(f"/proc/{api.pid}/clear_refs").write_text("5")
                before = peak_rss_kb(api.pid)
                t0 = time.perf_counter()
                # curl as the client: a Python client would compete for the same two cores.
                url = (
                    f"{base}/v1/snapshots/{sid}/export?format={fmt}&layout={layout}&mode=cgd"
                    + extra
                )
                out = subprocess.run(
                    [
                        "curl",
                        "-sS",
                        "-f",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{size_download}",
                        "-H",
                        f"Authorization: Bearer {key}",
                        url,
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                size = int(out.stdout)
                elapsed = time.perf_counter() - t0
                rates.append(args.rows / elapsed)
                growth.append((peak_rss_kb(api.pid) - before) / 1024)
            print(
                f"{fmt:8s} {layout:9s} {extra:18s}: median {statistics.median(rates):,.0f} rows/s "
                f"(runs {', '.join(f'{x:,.0f}' for x in rates)}), {size / 1e6:.0f} MB, "
                f"API peak RSS growth {max(growth):.0f} MB",
                flush=True,
            )
    finally:
        api.terminate()
        api.wait(10)
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
