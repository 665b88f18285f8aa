"""The Python client (cgd.client) and the team CLI (cgd datasets/jobs/snapshots/runs): against a
real API process, a real Celery worker and the simulated LLM server; the CLI as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from sqlalchemy import update

from cgd.client import CgdApiError, CgdClient, CgdConnectionError, format_detail
from cgd.simulator import SimulatorProcess
from tests.conftest import ROOT, data_file, free_port, make_key

N = 20


@pytest.fixture(scope="module")
def gsm8k_20(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "gsm8k_20.jsonl"
    with open(data_file("gsm8k_train.jsonl")) as src:
        lines = [next(src) for _ in range(N)]
    path.write_text("".join(lines))
    return path


@pytest.fixture
def sim(gsm8k_20: Path) -> Iterator[SimulatorProcess]:
    with SimulatorProcess(
        ["--port", "0", "--dataset", str(gsm8k_20), "--slots", "16", "--latency", "0.01"]
    ) as s:
        yield s


@pytest.fixture
def api(api_server, sessionmaker_) -> Iterator[CgdClient]:  # type: ignore[no-untyped-def]
    with CgdClient(api_server.url, make_key(sessionmaker_), max_retries=1, backoff_s=0.01) as c:
        yield c


def give_run_token(sessionmaker_, run_id: str) -> str:  # type: ignore[no-untyped-def]
    """Stands in for the trainer: sets a known run token (the real one only travels in the
    Celery message), so the test can post the events a trainer would."""
    from cgd.db.models import TrainingRun
    from cgd.runs.ops import _hash

    token = f"test-{uuid.uuid4()}"
    with sessionmaker_.begin() as s:
        s.execute(
            update(TrainingRun)
            .where(TrainingRun.id == uuid.UUID(run_id))
            .values(token_hash=_hash(token))
        )
    return token


def post_events(
    url: str, run_id: str, token: str, events: list[tuple[str, dict[str, Any]]]
) -> None:
    for kind, data in events:
        r = httpx.post(
            f"{url}/v1/training-runs/{run_id}/events",
            json={"type": kind, "data": data},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text


PLAN = {"train_rows": 8, "val_rows": 0, "epochs": 1, "total_steps": 2, "tokens_per_step": 900}
TRAINER_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("status", {"state": "running", "step": 0, "total_steps": 2}),
    ("data", {"rows": 8, "plan": PLAN}),
    ("step", {"step": 1, "loss": 1.25, "lr": 1e-6, "grad_norm": 0.5}),
    ("log", {"heartbeat": True}),  # `runs watch` leaves these out
    ("step", {"step": 2, "loss": 0.75, "lr": 5e-7, "grad_norm": 0.4}),
    ("eval", {"accuracy": {"math500": 0.125}, "step": 2}),
    ("artifact", {"kind": "model", "path": "/tmp/model-final"}),
    ("status", {"state": "finished", "step": 2}),
]


# --- the client without a server: retries and error text ---------------------------------------


def test_retries_only_where_repeating_is_safe() -> None:
    calls: list[tuple[str, str | None]] = []
    script: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.headers.get("idempotency-key")))
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return httpx.Response(step, json={"error": "ServiceUnavailable", "detail": "db down"})

    c = CgdClient("http://api", "k", transport=httpx.MockTransport(handler), backoff_s=0.001)
    # GET: retried on 503 until it succeeds.
    script[:] = [503, 503, 200]
    c._send("GET", "/v1/jobs")
    assert len(calls) == 3
    # POST without a key: a 503 is raised at once (the first attempt may have been committed).
    calls.clear()
    script[:] = [503]
    with pytest.raises(CgdApiError) as e:
        c._send("POST", "/v1/snapshots", json={})
    assert e.value.status == 503 and len(calls) == 1
    # POST without a key, never sent (connect error): retried.
    calls.clear()
    script[:] = [httpx.ConnectError("refused"), 201]
    c._send("POST", "/v1/snapshots", json={})
    assert len(calls) == 2
    # POST without a key, answer lost after sending: not retried.
    calls.clear()
    script[:] = [httpx.ReadError("reset")]
    with pytest.raises(CgdConnectionError):
        c._send("POST", "/v1/training-runs", json={})
    assert len(calls) == 1
    # create_job sends an Idempotency-Key, the same on every attempt, so it is retried.
    calls.clear()
    script[:] = [httpx.ReadError("reset"), 503, 202]
    c.create_job({"dataset_id": "x"})
    assert len(calls) == 3 and calls[0][1] and len({k for _, k in calls}) == 1
    # 4xx: never retried.
    calls.clear()
    script[:] = [404]
    with pytest.raises(CgdApiError):
        c.get_job("x")
    assert len(calls) == 1
    c.close()


def test_error_text() -> None:
    e = CgdApiError(422, "InvalidDataset", {"line": 3, "reason": "invalid JSON"})
    assert str(e) == "422 InvalidDataset: line 3: invalid JSON" and e.line == 3
    e = CgdApiError(422, "InvalidRequest", [{"field": "body.teacher.temperature", "reason": "≤ 2"}])
    assert str(e) == "422 InvalidRequest: field body.teacher.temperature: ≤ 2"
    assert format_detail({"job_id": "j"}) == "job_id=j"
    assert "CGD_API_KEY" in (CgdApiError(401, "Unauthorized").hint or "")


# --- the client against the live API -----------------------------------------------------------


@pytest.mark.integration
def test_client_datasets_pagination_and_errors(api, api_server, gsm8k_20, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert api.healthz() == {"status": "ok"}
    assert api.readyz()["status"] == "ok"
    seen: list[tuple[int, int | None]] = []
    ds = api.upload_dataset(gsm8k_20, name="gsm8k-20", progress=lambda d, t: seen.append((d, t)))
    size = gsm8k_20.stat().st_size
    assert ds["num_items"] == N and ds["fields"]["prompt_field"] == "question"
    assert seen[-1] == (size, size)
    # An open file streams too; the same Idempotency-Key gives the same dataset back.
    with open(gsm8k_20, "rb") as f:
        a = api.upload_dataset(f, name="again", idempotency_key="k1")
        b = api.upload_dataset(f, name="again", idempotency_key="k1")
    assert a["id"] == b["id"] != ds["id"]
    # Pagination.
    page = api.list_datasets(limit=1)
    assert len(page["data"]) == 1 and page["next_cursor"]
    assert {d["id"] for d in api.iter_datasets(page_size=1)} == {ds["id"], a["id"]}
    items = list(api.iter_items(ds["id"], page_size=7))
    assert [i["idx"] for i in items] == list(range(N))
    assert api.list_items(ds["id"], limit=5)["data"][4]["idx"] == 4
    assert api.get_dataset(ds["id"])["name"] == "gsm8k-20"
    api.delete_dataset(a["id"])
    # Errors: 404, 422 with the line, 401, unreachable.
    with pytest.raises(CgdApiError) as e:
        api.get_dataset(a["id"])
    assert e.value.status == 404 and e.value.kind == "DatasetNotFound"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q1", "answer": "1"}\n{"question": "q2", "answer": "2"}\n{oops\n')
    with pytest.raises(CgdApiError) as e:
        api.upload_dataset(bad)
    assert (e.value.status, e.value.kind, e.value.line) == (422, "InvalidDataset", 3)
    assert str(e.value).startswith("422 InvalidDataset: line 3")
    with pytest.raises(CgdApiError) as e:
        api.get_job(str(uuid.uuid4()))
    assert (e.value.status, e.value.kind) == (404, "JobNotFound")
    with CgdClient(api_server.url, "not-a-key") as anon, pytest.raises(CgdApiError) as e:
        anon.list_jobs()
    assert e.value.status == 401 and "CGD_API_KEY" in (e.value.hint or "")
    dead = f"http://127.0.0.1:{free_port()}"
    with (
        CgdClient(dead, "k", max_retries=1, backoff_s=0.01) as down,
        pytest.raises(CgdConnectionError) as e,
    ):
        down.healthz()
    assert e.value.status == 0 and dead in str(e.value)


@pytest.mark.integration
def test_client_jobs_snapshots_runs(  # type: ignore[no-untyped-def]
    api, api_server, sessionmaker_, start_worker, sim, gsm8k_20, tmp_path
) -> None:
    from cgd.generation.spec import JobSpec
    from cgd.llm_client import EndpointConfig

    start_worker()
    ds = api.upload_dataset(gsm8k_20)
    spec = JobSpec(
        dataset_id=ds["id"],
        student=EndpointConfig(base_url=sim.base_url, model="student", temperature=0.0),
        teacher=EndpointConfig(base_url=sim.base_url, model="teacher", temperature=0.0),
        chunk_size=10,
    )
    job = api.create_job(spec)
    assert job["status"] == "queued" and job["total_items"] == N
    seen: list[str] = []
    status = api.wait_job(
        job["id"], poll_s=0.2, timeout_s=60, on_status=lambda s: seen.append(s["status"])
    )
    assert status["status"] == "completed" and status["counts"]["completed"] == N
    assert [j["id"] for j in api.iter_jobs(page_size=1)] == [job["id"]]
    rows = list(api.iter_triplets(job["id"], page_size=6))
    assert len(rows) == N and all(r["refined_response"] for r in rows)
    right = list(api.iter_triplets(job["id"], refined_correct=True))
    assert len(right) == sum(1 for r in rows if r["refined_correct"])
    assert api.list_triplets(job["id"], limit=3, status="verified")["next_cursor"]
    assert api.retry_failed(job["id"])["retried"] == 0
    # Snapshots: create, card, exports streamed to disk.
    snap = api.create_snapshot(
        {"filters": {"refined_correct": None}}, job_ids=[job["id"]], name="s1"
    )
    assert snap["status"] == "ready" and snap["num_items"] == N
    assert api.get_snapshot(snap["id"])["content_hash"] == snap["content_hash"]
    assert [s["id"] for s in api.iter_snapshots()] == [snap["id"]]
    assert "markdown" in api.snapshot_card(snap["id"])
    assert api.snapshot_card_markdown(snap["id"]).lstrip().startswith("#")
    progress: list[int] = []
    res = api.export_snapshot(
        snap["id"],
        tmp_path / "s.jsonl",
        layout="messages",
        progress=lambda d, t: progress.append(d),
    )
    assert res["content_hash"] == snap["content_hash"] and progress[-1] == res["bytes"] > 0
    lines = (tmp_path / "s.jsonl").read_text().splitlines()
    assert len(lines) == N and "messages" in json.loads(lines[0])
    api.export_snapshot(snap["id"], tmp_path / "s.parquet", format="parquet")
    assert pq.read_table(tmp_path / "s.parquet").num_rows == N
    assert not (tmp_path / "s.parquet.part").exists()
    # Training runs: create, events from a stand-in trainer, tail, cancel.
    run = api.create_run({"snapshot_id": snap["id"], "base_model": "tiny", "eval": {"sets": []}})
    assert run["status"] == "queued"
    token = give_run_token(sessionmaker_, run["id"])
    post_events(api_server.url, run["id"], token, TRAINER_EVENTS)
    types = [e["type"] for e in api.tail_events(run["id"], poll_s=0.1)]
    assert types == ["status", *[t for t, _ in TRAINER_EVENTS]]
    assert [e["type"] for e in api.iter_events(run["id"], page_size=2)] == types
    done = api.get_run(run["id"])
    assert done["status"] == "completed" and done["metrics"]["loss"] == 0.75
    other = api.create_run({"snapshot_id": snap["id"], "base_model": "tiny", "eval": {"sets": []}})
    assert api.cancel_run(other["id"])["status"] == "cancelled"
    assert {r["id"] for r in api.iter_runs(page_size=1)} == {run["id"], other["id"]}
    with pytest.raises(CgdApiError) as e:
        api.cancel_run(other["id"])
    assert e.value.status == 409
    # (A snapshot a run uses answers 500 on delete today, so delete an unused one.)
    spare = api.create_snapshot(job_ids=[job["id"]], name="spare")
    api.delete_snapshot(spare["id"])
    with pytest.raises(CgdApiError) as e:
        api.get_snapshot(spare["id"])
    assert e.value.status == 404


# --- the CLI, as a user runs it ----------------------------------------------------------------


def cgd(env: dict[str, str], *args: Any, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *map(str, args)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_line(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 0, (p.args, p.returncode, p.stdout, p.stderr)
    return p.stdout.strip().splitlines()[-1]


@pytest.mark.integration
@pytest.mark.slow
def test_cli_end_to_end(  # type: ignore[no-untyped-def]
    api_server, sessionmaker_, start_worker, sim, gsm8k_20, tmp_path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CGD_")},
        "CGD_API_URL": api_server.url,
        "CGD_API_KEY": make_key(sessionmaker_),
    }
    start_worker()
    p = cgd(env, "datasets", "push", gsm8k_20, "--name", "gsm8k-20")
    ds = last_line(p)
    assert f"dataset gsm8k-20: {N} items" in p.stdout and uuid.UUID(ds)
    assert ds in cgd(env, "datasets", "ls").stdout
    assert "gsm8k-20" in cgd(env, "datasets", "show", ds).stdout

    p = cgd(
        env, "jobs", "create", "--dataset", ds, "--teacher-url", sim.base_url,
        "--teacher-model", "teacher", "--student-model", "student", "--temperature", "0",
        "--chunk-size", "10",
    )  # fmt: skip
    job = last_line(p)
    assert "queued" in p.stdout
    p = cgd(env, "jobs", "watch", job, "--interval", "0.3")
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert f"job {job} completed" in p.stdout and f"{N}/{N} completed" in p.stdout
    assert "quality: accuracy" in p.stdout  # the summary ends with the quality numbers
    assert "verified" in p.stderr  # progress lines with stage counts
    assert job in cgd(env, "jobs", "ls").stdout
    shown = json.loads(cgd(env, "jobs", "show", job, "--json").stdout)
    assert shown["counts"]["completed"] == N
    assert "0 failed items queued again" in cgd(env, "jobs", "retry-failed", job).stdout
    triplets = cgd(env, "jobs", "triplets", job, "-n", "3").stdout.splitlines()
    assert len(triplets) == 3 and json.loads(triplets[0])["critique"]

    curation = tmp_path / "curation.yaml"
    curation.write_text("filters:\n  refined_correct: null\ndedup:\n  exact: true\n")
    p = cgd(env, "snapshots", "create", "--job", job, "--spec", curation, "--name", "cli-snap")
    snap = last_line(p)
    assert "ready" in p.stdout
    out = tmp_path / "train.jsonl"
    p = cgd(env, "snapshots", "export", snap, "--layout", "messages", "-o", out)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    num_items = json.loads(cgd(env, "snapshots", "show", snap, "--json").stdout)["num_items"]
    assert len(rows) == num_items > 0 and f"{num_items} rows" in p.stdout
    assert rows[0]["messages"]
    pq_out = tmp_path / "train.parquet"
    p = cgd(env, "snapshots", "export", snap, "--format", "parquet", "-o", pq_out)
    assert p.returncode == 0 and pq.read_table(pq_out).num_rows == num_items  # native
    p = cgd(env, "snapshots", "export", snap, "--mode", "sft", "-o", tmp_path / "x.jsonl")
    assert p.returncode != 0 and "mode applies only to the training layouts" in p.stderr
    p = cgd(env, "snapshots", "export", snap, "--format", "parquet", "--layout", "sharegpt",
            "--mode", "sft", "-o", pq_out)  # fmt: skip
    assert p.returncode == 0 and pq.read_table(pq_out).num_rows == num_items
    assert cgd(env, "snapshots", "card", snap).stdout.lstrip().startswith("#")
    assert snap in cgd(env, "snapshots", "ls").stdout

    # A training run: `runs watch` follows the events of a stand-in trainer to the end.
    p = cgd(env, "runs", "create", "--snapshot", snap, "--base-model", "tiny", "--max-steps", "2",
            "--no-eval")  # fmt: skip
    run = last_line(p)
    token = give_run_token(sessionmaker_, run)
    watch = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "runs", "watch", run, "--interval", "0.2"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    feeder = threading.Thread(
        target=lambda: (time.sleep(1.0), post_events(api_server.url, run, token, TRAINER_EVENTS))
    )
    feeder.start()
    stdout, stderr = watch.communicate(timeout=60)
    feeder.join()
    assert watch.returncode == 0, (stdout, stderr)
    assert "step 2/2  loss 0.75" in stdout and "math500 0.125" in stdout
    # The plan comes before the first step.
    assert stdout.index("plan: 8 training rows, 0 validation rows, 1 epoch(s), 2 steps") < (
        stdout.index("step 1/2")
    )
    assert "heartbeat" not in stdout
    assert f"run {run} completed at step 2, loss 0.75" in stdout
    assert run in cgd(env, "runs", "ls").stdout
    run2 = last_line(cgd(env, "runs", "create", "--snapshot", snap, "--base-model", "tiny"))
    assert "cancel" in cgd(env, "runs", "cancel", run2).stdout
    assert cgd(env, "runs", "watch", run2).returncode == 1  # cancelled

    # A cancelled job: watch exits 1.
    httpx.post(f"{sim.url}/sim/config", json={"latency_s": 5.0}).raise_for_status()
    job_spec = tmp_path / "job.yaml"
    job_spec.write_text(
        f"dataset_id: {ds}\nteacher: {{base_url: '{sim.base_url}', model: teacher}}\n"
        f"student: {{base_url: '{sim.base_url}', model: student}}\nverifier: math\n"
    )
    job2 = last_line(cgd(env, "jobs", "create", "--spec", job_spec, "--temperature", "0"))
    spec2 = json.loads(cgd(env, "jobs", "show", job2, "--json").stdout)["spec"]
    assert spec2["teacher"]["temperature"] == spec2["student"]["temperature"] == 0.0
    assert "cancelled" in cgd(env, "jobs", "cancel", job2).stdout
    p = cgd(env, "jobs", "watch", job2)
    assert p.returncode == 1 and f"job {job2} cancelled" in p.stdout

    # Exit codes scripts can rely on.
    p = cgd({**env, "CGD_API_KEY": "wrong"}, "jobs", "ls")
    assert p.returncode == 3 and "CGD_API_KEY" in p.stderr
    p = cgd(env, "jobs", "show", str(uuid.uuid4()))
    assert p.returncode == 3 and "not found" in p.stderr and "JobNotFound" in p.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "1"}\n[1, 2]\n')
    p = cgd(env, "datasets", "push", bad)
    assert p.returncode == 3 and "line 2" in p.stderr, p.stderr
    p = cgd(env, "jobs", "create", "-d", ds, "--teacher-url", sim.base_url, "--teacher-model",
            "t", "--student-model", "s", "--temperature", "9")  # fmt: skip
    assert p.returncode == 3 and "temperature" in p.stderr
    p = cgd(env, "jobs", "create", "--teacher-url", sim.base_url, "--teacher-model", "t")
    assert p.returncode == 2 and "--dataset" in p.stderr
    p = cgd({**env, "CGD_API_URL": f"http://127.0.0.1:{free_port()}"}, "datasets", "ls")
    assert p.returncode == 4 and "cannot reach" in p.stderr


def test_every_command_has_help() -> None:
    from typer.main import get_command
    from typer.testing import CliRunner

    from services.cli import app

    root = get_command(app)
    runner = CliRunner()
    groups = ("datasets", "jobs", "snapshots", "runs")
    for group in groups:
        sub = root.commands[group]  # type: ignore[attr-defined]
        for name in [None, *sub.commands]:
            args = [group, *([name] if name else []), "--help"]
            r = runner.invoke(app, args)
            assert r.exit_code == 0 and "Usage" in r.output, (args, r.output)
