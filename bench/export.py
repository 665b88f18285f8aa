"""Export throughput and memory: synthetic triplets -> iter_export_rows -> iter_*_bytes -> a file.

    .venv/bin/python bench/export.py [--rows 200000] [--repeats 3] [--out /dev/null]

Each (format, layout, mode) case runs ``--repeats`` times, each in a fresh subprocess so that its
peak RSS (``ru_maxrss``) belongs to that run alone; "rss growth" is that peak minus the RSS just
before the export started: after imports, after building the synthetic text pool and after a
10-row warm-up export, because Arrow/Parquet initialise lazily (~55 MiB once per process, not per
export). Triplets are realistic in size (prompt ~300 chars, initial/refined answers ~1,000,
critique ~500) and are generated lazily, as a database cursor would feed them; the ``source``
line is that generator alone, included in every other line's time. Reports the median.

Rows are ~3 KB of varied words, each row unique (``bench/texts.py``: a 20,000-word Zipf
vocabulary with numbers), so Parquet's dictionaries and compression see realistic text, not a
pool of repeated strings; ``--pooled`` uses the old pool of repeated texts for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator

CASES = [
    ("source", "-", "-"),
    ("jsonl", "messages", "cgd"),
    ("parquet", "messages", "cgd"),
    ("jsonl", "native", "cgd"),
    ("parquet", "native", "cgd"),
]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_one(fmt: str, layout: str, mode: str, rows: int, out: str, pooled: bool = False) -> dict:
    from cgd.curation.export import iter_export_rows, iter_jsonl_bytes, iter_parquet_bytes
    from cgd.curation.synthetic import synthetic_triplets

    def chunks_of(triplets: Iterable[dict]) -> Iterator[bytes]:
        if fmt == "source":
            return (b"" for _ in triplets)
        export_rows = iter_export_rows(triplets, layout, None if layout == "native" else mode)
        if fmt == "jsonl":
            return iter_jsonl_bytes(export_rows)
        return iter_parquet_bytes(export_rows, layout)

    for _ in chunks_of(synthetic_triplets(10, pool=4)):  # warm-up: lazy one-time initialisation
        pass
    if pooled:
        source = synthetic_triplets(rows)
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from texts import realistic_triplets

        source = realistic_triplets(rows)
    first = next(source)  # builds the text pool before the clock and the RSS baseline

    def all_rows() -> Iterator[dict]:
        yield first
        yield from source

    before = _rss_bytes()
    start = time.perf_counter()
    chunks = chunks_of(all_rows())
    size = 0
    with open(out, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
            size += len(chunk)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {
        "rows_per_s": rows / seconds,
        "seconds": seconds,
        "mib": size / 2**20,
        "rss_growth_mib": max(0, peak - before) / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--pooled", action="store_true", help="the old pool of repeated texts")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.devnull, help="file to write to (default: /dev/null)")
    ap.add_argument("--one", nargs=3, metavar=("FORMAT", "LAYOUT", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.one:
        fmt, layout, mode = args.one
        print(json.dumps(run_one(fmt, layout, mode, args.rows, args.out, args.pooled)))
        return

    print(f"{args.rows:,} triplets, median of {args.repeats} runs, output to {args.out}")
    header = ("format", "layout", "mode", "rows/s", "s", "MiB out", "rss +MiB")
    print("{:8} {:9} {:5} {:>9} {:>6} {:>8} {:>9}".format(*header))
    results = []
    for fmt, layout, mode in CASES:
        runs = []
        for _ in range(args.repeats):
            cmd = [sys.executable, __file__, "--rows", str(args.rows), "--out", args.out]
            cmd += ["--one", fmt, layout, mode] + (["--pooled"] if args.pooled else [])
            proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
            runs.append(json.loads(proc.stdout))
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        results.append({"format": fmt, "layout": layout, "mode": mode, **med, "runs": runs})
        print(
            f"{fmt:8} {layout:9} {mode:5} {med['rows_per_s']:9,.0f} {med['seconds']:6.2f} "
            f"{med['mib']:8.1f} {med['rss_growth_mib']:9.1f}"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
