"""Where an export's time goes, in-process (no HTTP): the snapshot's rows read from Postgres,
then each export on top of that read. Same data as ``bench/export_api.py`` (unique ~3 KB rows of
``bench/texts.py``), medians of ``--runs``.

    .venv/bin/python bench/export_stages.py [--rows 100000] [--runs 3]

"read, every column" is what a ``native`` export reads; "read, messages/cgd columns" is what a
training export reads (only its mode's fields). The gap between a read line and an export line
is the export's own cost: the read runs in a thread ahead of it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import psycopg
from export_api import load_snapshot
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from stack import bench_stack

from cgd.curation.export import fields_for
from cgd.db.models import Snapshot
from cgd.snapshots import ops


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--port", type=int, default=8768)
    args = ap.parse_args()
    with bench_stack(args.port) as stack:
        sid = load_snapshot(stack.db_url, args.rows)
        with psycopg.connect(stack.db_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE snapshot_rows")
        factory = sessionmaker(create_engine(stack.env["CGD_DATABASE_URL"]))

        def read(fields: tuple[str, ...] | None) -> Callable[[], None]:
            def run() -> None:
                with factory() as s:
                    snap = s.get(Snapshot, sid)
                    assert snap is not None
                    for _ in ops.iter_rows(s, snap, fields):
                        pass

            return run

        def export(fmt: str, layout: str) -> Callable[[], None]:
            mode = None if layout == "native" else "cgd"

            def run() -> None:
                for _ in ops.stream_export(factory, sid, format=fmt, layout=layout, mode=mode):
                    pass

            return run

        stages = [
            ("read, every column", read(None)),
            ("read, messages/cgd columns", read(fields_for("messages", "cgd"))),
            ("JSONL messages/cgd", export("jsonl", "messages")),
            ("Parquet messages/cgd", export("parquet", "messages")),
            ("JSONL native", export("jsonl", "native")),
        ]
        print(f"{args.rows:,} rows, median of {args.runs} runs")
        for label, fn in stages:
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            m = statistics.median(times)
            print(f"{label:28s} {m / args.rows * 1e6:6.2f} us/row {args.rows / m:10,.0f} rows/s")


if __name__ == "__main__":
    main()
