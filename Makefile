# Verbs. `make test` and `make api` set everything up on a fresh machine first.
.PHONY: setup services tools demo test test-fast lint migrate api bench-ingest bench

setup:
	@bash scripts/setup.sh

services:
	@bash scripts/services.sh

tools:
	@bash scripts/tools.sh

# The main job on embedded defaults: no Postgres, no Redis, no GPU needed.
demo: setup
	.venv/bin/cgd quickstart --dir cgd-quickstart

test: setup services tools
	HF_HUB_OFFLINE=1 .venv/bin/pytest -q

test-fast: setup services tools
	HF_HUB_OFFLINE=1 .venv/bin/pytest -q -m "not slow"

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy cgd

migrate: setup
	.venv/bin/cgd migrate

# The REST API on the embedded defaults (SQLite under ~/.cgd) unless CGD_DATABASE_URL is set.
api: migrate
	.venv/bin/cgd api --host 127.0.0.1 --port 8000

bench-ingest: setup services
	.venv/bin/python bench/ingest.py

bench: setup services
	.venv/bin/python bench/ingest.py
	.venv/bin/python bench/pipeline.py
	.venv/bin/python bench/export_api.py
	.venv/bin/python bench/verify.py
