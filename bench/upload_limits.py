"""Hostile uploads against a real `cgd api` with its default limits: how long each takes, how
fast its bytes are decoded, and how much the API's peak RSS grows (issue 10's attacks).

    .venv/bin/python bench/upload_limits.py [--runs 3]

Cases: a 1,000,000-row .jsonl.gz of ~30 KB; 1 GiB of gzipped blank lines; a Parquet file with
one 1 MiB string dictionary-encoded on 1,000 rows (1 GB decoded, stored: it is within the
defaults); the same with a 16 MiB string (refused, CGD_MAX_LINE_BYTES). Decode rate = decoded
bytes / time from request start to answer (rows included in the time are committed).
"""

from __future__ import annotations

import argparse
import gzip
import io
import statistics
import time
from collections.abc import Callable

import httpx
from stack import bench_stack, peak_rss_kb, reset_peak_rss


def rows_gz() -> tuple[str, bytes, int]:
    raw = b'{"prompt": "x"}\n' * 1_000_000
    return "rows.jsonl.gz", gzip.compress(raw, 9), len(raw)


def blank_gz() -> tuple[str, bytes, int]:
    raw = b"\n" * 1024**3 + b'{"prompt": "p"}\n'
    return "blank.jsonl.gz", gzip.compress(raw, 9), len(raw)


def parquet_bomb(value_bytes: int) -> Callable[[], tuple[str, bytes, int]]:
    def make() -> tuple[str, bytes, int]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        column = pa.array(["x" * value_bytes] * 1000).dictionary_encode()
        pq.write_table(pa.table({"prompt": column}), buf, compression="zstd")
        return "bomb.parquet", buf.getvalue(), value_bytes * 1000

    return make


CASES = {
    "1M rows .jsonl.gz": rows_gz,
    "1 GiB blank lines .jsonl.gz": blank_gz,
    "Parquet 1 MiB x 1000 (dictionary)": parquet_bomb(1024**2),
    "Parquet 16 MiB x 1000 (dictionary)": parquet_bomb(16 * 1024**2),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--port", type=int, default=8766)
    args = ap.parse_args()
    files = {name: make() for name, make in CASES.items()}
    with bench_stack(args.port) as stack:
        headers = {"Authorization": f"Bearer {stack.key}"}
        for name, (filename, data, decoded) in files.items():
            times, growths, status = [], [], 0
            for _ in range(args.runs):
                reset_peak_rss(stack.api_pid)
                base = peak_rss_kb(stack.api_pid)
                start = time.perf_counter()
                r = httpx.post(
                    f"{stack.base}/v1/datasets",
                    files={"file": (filename, data)},
                    headers=headers,
                    timeout=900,
                )
                times.append(time.perf_counter() - start)
                growths.append((peak_rss_kb(stack.api_pid) - base) / 1024)
                status = r.status_code
            t = statistics.median(times)
            print(
                f"{name}: {len(data) / 1024:,.0f} KiB sent, HTTP {status}, median {t:.1f} s, "
                f"{decoded / t / 1e6:,.0f} MB/s decoded (if read whole), API peak RSS growth "
                f"median {statistics.median(growths):.0f} MB (max {max(growths):.0f})"
            )


if __name__ == "__main__":
    main()
