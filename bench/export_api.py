"""Snapshot export benchmark through the real API: 200,000 triplets streamed as JSONL and Parquet.

Loads a snapshot of synthetic triplets (~3 KB of varied words each, every row unique:
``bench/texts.py``) straight into a throwaway Postgres database, starts `cgd api` on it, and
downloads `GET /v1/snapshots/{id}/export` in each format. Reports rows/s (request start → last
byte) and the API process's peak-RSS growth. Target (docs/performance.md): ≥ 50,000 rows/s,
constant memory.

    .venv/bin/python bench/export_api.py [--rows 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
from stack import bench_stack, peak_rss_kb, reset_peak_rss
from texts import realistic_triplets

ROOT = Path(__file__).resolve().parents[1]


def load_snapshot(db_url: str, rows: int) -> uuid.UUID:
    """A snapshot of the bench team: ``rows`` unique triplets of ~3 KB of varied words
    (``bench/texts.py``), COPYed in."""
    sid, job = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(db_url) as conn:
        team = conn.execute("SELECT id FROM teams WHERE name = 'bench'").fetchone()
        assert team is not None
        team_id = team[0]
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
            for i, t in enumerate(realistic_triplets(rows)):
                copy.write_row(
                    (sid, i, f"{job}:{i}:0", str(job), str(i), 0, "train", t["prompt"],
                     t["reference"], t["initial_response"], t["critique"], t["verdict"],
                     t["refined_response"], False, True, "verified", None, False)
                )  # fmt: skip
    return sid


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--port", type=int, default=8767)
    args = ap.parse_args()
    with bench_stack(args.port) as stack:
        sid = load_snapshot(stack.db_url, args.rows)
        key, base, api_pid = stack.key, stack.base, stack.api_pid
        for fmt, layout, extra in (
            ("jsonl", "messages", ""),
            ("parquet", "messages", ""),
            ("parquet", "messages", "&compression=lz4"),
            ("parquet", "messages", "&compression=none"),
            ("jsonl", "native", ""),
        ):
            rates, growth = [], []
            for _ in range(args.runs):
                reset_peak_rss(api_pid)
                before = peak_rss_kb(api_pid)
                t0 = time.perf_counter()
                # curl as the client: a Python client would compete for the same two cores.
                mode = "" if layout == "native" else "&mode=cgd"  # native takes no mode
                url = f"{base}/v1/snapshots/{sid}/export?format={fmt}&layout={layout}{mode}" + extra
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
                growth.append((peak_rss_kb(api_pid) - before) / 1024)
            print(
                f"{fmt:8s} {layout:9s} {extra:18s}: median {statistics.median(rates):,.0f} rows/s "
                f"(runs {', '.join(f'{x:,.0f}' for x in rates)}), {size / 1e6:.0f} MB, "
                f"API peak RSS growth {max(growth):.0f} MB",
                flush=True,
            )


if __name__ == "__main__":
    main()
