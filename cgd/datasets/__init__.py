"""Datasets: prompt files a team uploads (``/v1/datasets``, ``cgd datasets``).

- :mod:`.ops` — operations: create (streamed, all-or-nothing, idempotent), get, list, items, delete
- :mod:`.ingest` — parsing uploads (JSONL, JSONL.gz, CSV, Parquet) row by row, with limits
- :mod:`.schemas` — request and response bodies
- :mod:`.errors` — what the operations raise
"""
