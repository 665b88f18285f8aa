"""What the quality numbers add to a job status: the status aggregate alone vs status + quality
(items aggregate + tokens per stage over generations), on a job of `--items` finished items.

Creates a throwaway Postgres database, fills one job with synthetic item and generation rows
(`generate_series`, a realistic mix of verdicts and correctness), then times `job_statuses` both
ways (median of `--repeats`, after one warm-up each), and once more with the quality cache warm
(a finished job polled again: `cgd.jobs.quality.QualityCache`).

    .venv/bin/python bench/quality.py [--items 200000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import time
import uuid

import psycopg

PG_ADMIN = os.environ.get("CGD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

FILL = """
INSERT INTO teams (id, name, created_at) VALUES (%(team)s, 'bench', now());
INSERT INTO datasets (id, team_id, name, format, num_items, size_bytes, content_hash, fields,
                      stats, created_at)
  VALUES (%(ds)s, %(team)s, 'bench', 'jsonl', %(n)s, 0, 'x', '{}', '{}', now());
INSERT INTO jobs (id, team_id, dataset_id, spec, template_version, total_items, num_chunks,
                  created_at, started_at, finished_at)
  VALUES (%(job)s, %(team)s, %(ds)s, %(spec)s, 'cgd-v1', %(n)s, 1, now(), now(), now());
INSERT INTO job_items (job_id, idx, sample, state, verdict, initial_correct, refined_correct,
                       verdict_agrees, truncated, failures, prompt_tokens, completion_tokens)
  SELECT %(job)s, i, 0, CASE WHEN i %% 50 = 0 THEN 'failed' ELSE 'verified' END,
         CASE WHEN i %% 7 = 0 THEN NULL WHEN i %% 3 = 0 THEN 'wrong' ELSE 'right' END,
         i %% 3 <> 0, i %% 11 <> 0, NULL, i %% 97 = 0, 0, 900, 700
  FROM generate_series(0, %(n)s - 1) AS i;
INSERT INTO generations (job_id, idx, sample, stage, text, request, template_version,
                         prompt_tokens, completion_tokens, latency_s, attempts, created_at)
  SELECT %(job)s, i, 0, s, 'x', '{}', 'cgd-v1', 300, 230, 0.1, 1, now()
  FROM generate_series(0, %(n)s - 1) AS i, unnest(ARRAY['probe', 'critique', 'refine']) AS s;
ANALYZE job_items; ANALYZE generations;
"""


def timed(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up (plans, buffers)
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    from cgd.db.engine import make_engine, make_sessionmaker
    from cgd.db.migrate import upgrade
    from cgd.db.models import Job
    from cgd.jobs import ops, quality

    name = f"cgd_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    url = f"{base.replace('postgresql://', 'postgresql+psycopg://')}/{name}"
    try:
        upgrade(url)
        ids = {"team": uuid.uuid4(), "ds": uuid.uuid4(), "job": uuid.uuid4()}
        teacher = {"base_url": "http://t/v1", "model": "t"}
        spec = {"dataset_id": str(ids["ds"]), "student": None, "teacher": teacher}
        with psycopg.connect(f"{base}/{name}", autocommit=True) as conn:
            params = {**ids, "n": args.items, "spec": json.dumps(spec)}
            for statement in filter(str.strip, FILL.split(";")):
                conn.execute(statement, params if "%(" in statement else None)
        engine = make_engine(url)
        factory = make_sessionmaker(engine)
        with factory() as session:
            job = session.get(Job, ids["job"])
            assert job is not None
            jid = [job.id]
            plain = timed(lambda: ops.state_groups(session, [job]), args.repeats)
            items = timed(lambda: quality.quality_counts(session, jid), args.repeats)
            tokens = timed(lambda: quality.stage_tokens(session, jid), args.repeats)
            cache = quality.CACHE

            def cold() -> None:
                cache._entries.clear()  # noqa: SLF001 - what a first read (or a change) costs
                ops.job_statuses(session, [job])

            full = timed(cold, args.repeats)
            warm = timed(lambda: ops.job_statuses(session, [job]), args.repeats)
        engine.dispose()
        print(
            json.dumps(
                {
                    "items": args.items,
                    "status_without_quality_ms": round(1000 * plain, 1),
                    "quality_counts_ms": round(1000 * items, 1),
                    "stage_tokens_ms": round(1000 * tokens, 1),
                    "status_with_quality_ms": round(1000 * full, 1),
                    "status_quality_cached_ms": round(1000 * warm, 1),
                }
            )
        )
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
