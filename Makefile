# Verbs. `make test` and `make api` set everything up on a fresh machine first.
.PHONY: setup services tools vllm demo demo-real experiment-real test test-fast lint migrate api bench-ingest bench

setup:
	@bash scripts/setup.sh

services:
	@bash scripts/services.sh

tools:
	@bash scripts/tools.sh

# A real vLLM for CPU in .venv-vllm (never in .venv: it pins its own torch and transformers)
# and the real 135M instruct model, converted once (~/.cache/cgd; CGD_REAL_MODEL_DIR).
vllm: setup
	@bash scripts/vllm.sh

# The main job on embedded defaults: no Postgres, no Redis, no GPU needed.
demo: setup
	.venv/bin/cgd quickstart --dir cgd-quickstart

# The same loop on real parts: real vLLM, real SmolLM2-135M-Instruct student, real fine-tune.
demo-real: vllm
	.venv/bin/cgd quickstart --real --dir cgd-quickstart-real

# The paper's experiment, small, on real parts: the real 135M student generates, the oracle
# simulator teaches, then cgd and its four baselines train a few steps each on the same rows and
# the comparison report is printed (docs/method.md, Experiments; a 7B GPU request is there too).
experiment-real: vllm
	.venv/bin/cgd quickstart --real --oracle-teacher --experiment --dir cgd-experiment-real

test: setup services tools vllm
	HF_HUB_OFFLINE=1 .venv/bin/pytest -q

test-fast: setup services tools
	HF_HUB_OFFLINE=1 .venv/bin/pytest -q -m "not slow and not real"

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
