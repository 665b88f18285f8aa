"""Each attack of issue 10, tried as a hostile team member would, now fails safe.

Real API process, real Postgres/Redis, the simulator as the (allowed) endpoint; worker tests
start a real Celery worker. See docs/security.md for the threat model.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cgd.security.urls import UrlRefused, check_url, url_allowed
from cgd.simulator import SimulatorProcess

ALLOW = "http://127.0.0.1:*/,http://teacher:8000/v1"


# --- URL policy (pure) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5432/v1",  # allowed host, any port: still fine by the list …
    ],
)
def test_any_port_entry_allows_loopback(url: str) -> None:
    check_url(url, ALLOW)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest", "not in CGD_ENDPOINT_ALLOWLIST"),
        ("http://[::1]:8000/v1", "not in"),
        ("http://0x7f.0.0.1:8000/v1", "not in"),
        ("http://teacher:8000/v1/../internal-admin", "dot segments"),
        ("http://teacher:8000/v1/%2e%2e/internal-admin", "dot segments"),
        ("http://teacher:8000/v1/%252e%252e/admin", "dot segments"),
        ("http://teacher:8000/v1\\..\\admin", "backslash"),
        ("http://user:pw@teacher:8000/v1", "user info"),
        ("http://teacher:8000@evil/v1", "user info"),
        ("http://teacher:8000.evil/v1", "unparsable"),
        ("http://teacher:8000/v1?x=1", "query"),
        ("ftp://teacher:8000/v1", "http"),
        ("http://teacher:8000/v1x", "not in"),
    ],
)
def test_url_policy_refuses(url: str, why: str) -> None:
    with pytest.raises(UrlRefused) as err:
        check_url(url, ALLOW)
    assert why in str(err.value), str(err.value)


def test_empty_allowlist_allows_nothing_and_says_how() -> None:
    with pytest.raises(UrlRefused) as err:
        check_url("http://teacher:8000/v1", "")
    assert "CGD_ENDPOINT_ALLOWLIST" in str(err.value)
    assert url_allowed("http://anything:1/v1", "*")
    assert not url_allowed("http://a/../b", "*")  # malformed URLs are refused even with *


def test_server_text_is_short_and_clean() -> None:
    from cgd.security.text import server_text

    text = server_text(b"\x1b[31mboom\r\n" + b"A" * 5000 + b"sk-secret", "sk-secret")
    assert len(text.encode()) <= 200 and "\x1b" not in text and "\n" not in text


def test_content_disposition_is_rfc6266() -> None:
    from cgd.security.names import content_disposition

    header = content_disposition('a"; filename="evil.exe')
    assert header.count("filename=") == 1 and header.count('"') == 2, header
    header = content_disposition("数据集-v1-native.jsonl")
    header.encode("latin-1")  # a header must be encodable
    assert "filename*=UTF-8''%E6%95%B0" in header


def test_blank_lines_are_skipped_but_kept_inside_quoted_csv_cells() -> None:
    from cgd.datasets.ingest import FieldMap, Limits, iter_rows

    path = Path(__import__("tempfile").mkdtemp()) / "d.csv"
    path.write_bytes(b'prompt,answer\n\n\n"two\n\nlines",1\n\n\nplain,2\n')
    rows = list(iter_rows(path, "csv", FieldMap(), Limits()))
    assert [(r.line, r.prompt) for r in rows] == [(6, "two\n\nlines"), (9, "plain")]
    jsonl = path.with_suffix(".jsonl")
    jsonl.write_bytes(b"\n \r\n\t\n" * 1000 + b'{"prompt": "p"}\n\n')
    assert [r.line for r in iter_rows(jsonl, "jsonl", FieldMap(), Limits())] == [3001]


# --- API: endpoints ----------------------------------------------------------------------------


@pytest.fixture
def dataset(client: httpx.Client) -> str:
    rows = "".join(
        json.dumps({"question": f"What is {i}+1?", "answer": str(i + 1)}) + "\n" for i in range(3)
    )
    r = client.post("/v1/datasets", files={"file": ("d.jsonl", rows.encode())})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatorProcess]:
    with SimulatorProcess(["--port", "0", "--slots", "8", "--latency", "0.01"]) as s:
        yield s


def _job(dataset_id: str, base_url: str, **teacher: Any) -> dict[str, Any]:
    return {
        "dataset_id": dataset_id,
        "student": {"base_url": base_url, "model": "student"},
        "teacher": {"base_url": base_url, "model": "teacher", **teacher},
    }


@pytest.mark.integration
def test_forbidden_endpoints_get_422_naming_the_setting(client, dataset, api_server) -> None:  # type: ignore[no-untyped-def]
    for url in (
        "http://169.254.169.254/v1",
        "http://[::1]:5432/v1",
        "http://0x7f.0.0.1/v1",
        "http://localhost:5432/v1",
        "http://127.0.0.1:1/v1/../admin",
        "http://127.0.0.1:1/v1/%2E%2E/admin",
        "http://u:p@127.0.0.1:1/v1",
    ):
        r = client.post("/v1/jobs", json=_job(dataset, url))
        assert r.status_code == 422, (url, r.text)
        detail = r.json()["detail"]
        assert detail["field"] == "student.base_url", r.text
        assert "CGD_ENDPOINT_ALLOWLIST" in detail["reason"] or "URL" in detail["reason"], r.text


@pytest.mark.integration
def test_bad_specs_are_4xx_never_5xx(client, dataset, sim) -> None:  # type: ignore[no-untyped-def]
    deep: Any = 1
    for _ in range(100):
        deep = {"a": deep}
    deeper = deep
    for _ in range(200):
        deeper = {"a": deeper}
    cases = [
        ({"extra": deep}, "teacher.extra"),
        ({"extra": deeper}, "body"),  # deeper than any request body may nest
        ({"extra": {"messages": []}}, "teacher"),  # the client's own fields
        ({"extra": {"model": "other"}}, "teacher"),
        ({"extra": {"stream": True}}, "teacher"),
        ({"model": "m" * 600}, "teacher.model"),
    ]
    for over, field in cases:
        r = client.post("/v1/jobs", json=_job(dataset, sim.base_url, **over))
        assert r.status_code == 422, (over, r.text[:300])
        assert field in r.json()["detail"].get("field", ""), r.text[:300]
    # 50 MB of spec: refused before parsing, naming the setting.
    r = client.post(
        "/v1/jobs",
        content=json.dumps(_job(dataset, sim.base_url, extra={"x": "y" * (2 * 1024**2)})),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413 and "CGD_MAX_JSON_BYTES" in r.text, r.text[:300]
    # Nesting no parser survives: 422, not a RecursionError.
    body = b'{"dataset_id": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    r = client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text[:300]


@pytest.fixture
def drafts(client: httpx.Client) -> str:
    """A one-row dataset with its own initial answer (only the teacher is called)."""
    r = client.post(
        "/v1/datasets",
        files={"file": ("r.jsonl", b'{"q": "What is 1+1?", "a": "2", "r": "\\\\boxed{2}"}\n')},
        data={"prompt_field": "q", "reference_field": "a", "response_field": "r"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _teacher_only(dataset_id: str, base_url: str) -> dict[str, Any]:
    return {
        "dataset_id": dataset_id,
        "student": None,
        "teacher": {"base_url": base_url, "model": "t"},
        # The worker's own checks are under test: these endpoints are not meant to serve.
        "preflight": False,
    }


@pytest.mark.integration
@pytest.mark.slow
def test_worker_never_follows_redirects_and_bounds_error_text(  # type: ignore[no-untyped-def]
    client, drafts, sim, start_worker
) -> None:
    start_worker()
    # An allowed host answering 307 (to the metadata service): a failed call, not followed.
    job = client.post("/v1/jobs", json=_teacher_only(drafts, f"{sim.url}/redirect/v1"))
    assert job.status_code == 202, job.text
    status = _wait(client, job.json()["id"])
    assert status["counts"]["failed"] == 1, status
    row = client.get(f"/v1/jobs/{job.json()['id']}/triplets").json()["data"][0]
    assert "HTTP 307: redirects are not followed" in row["error"], row
    # A server's error body comes back short and without control characters.
    noisy = client.post("/v1/jobs", json=_teacher_only(drafts, f"{sim.url}/noisy/v1")).json()
    _wait(client, noisy["id"])
    err = client.get(f"/v1/jobs/{noisy['id']}/triplets").json()["data"][0]["error"]
    server_text = err.split("HTTP 400: ", 1)[1]  # after our own "<stage> at <url>: …" prefix
    assert "bad" in server_text and len(server_text.encode()) <= 200, err
    assert not any(c in err for c in "\x1b\r\n"), err


@pytest.mark.integration
@pytest.mark.slow
def test_worker_checks_its_current_allowlist_before_every_call(  # type: ignore[no-untyped-def]
    client, drafts, sim, start_worker
) -> None:
    # The API accepted the job; the worker's list (changed since) no longer has the endpoint.
    start_worker(CGD_ENDPOINT_ALLOWLIST="http://teacher:8000/")
    job = client.post("/v1/jobs", json=_teacher_only(drafts, sim.base_url)).json()["id"]
    _wait(client, job)
    row = client.get(f"/v1/jobs/{job}/triplets").json()["data"][0]
    assert row["status"] == "failed" and "endpoint refused" in row["error"], row
    assert client.post(f"/v1/jobs/{job}/retry-failed").status_code == 202
    time.sleep(3)  # the retried chunk runs (and is refused again)
    _wait(client, job, until_failed=1)
    assert httpx.get(f"{sim.url}/sim/stats").json()["requests_total"] == 0  # never called


def _wait(
    client: httpx.Client, job_id: str, timeout_s: float = 60, until_failed: int | None = None
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.get(f"/v1/jobs/{job_id}").json()
        done = status["status"] in ("completed", "failed", "cancelled")
        if done and (until_failed is None or status["counts"]["failed"] >= until_failed):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


# --- uploads -----------------------------------------------------------------------------------


def _upload(client: httpx.Client, filename: str, data: bytes, **form: str) -> httpx.Response:
    return client.post("/v1/datasets", files={"file": (filename, data)}, data=form)


@pytest.mark.integration
def test_upload_bombs_are_refused_with_413_naming_the_setting(client, api_server) -> None:  # type: ignore[no-untyped-def]
    # 1. A tiny .jsonl.gz holding millions of rows: over CGD_MAX_DATASET_ITEMS (test: 200k).
    rows = gzip.compress(b'{"prompt": "x"}\n' * 300_000, 9)
    r = _upload(client, "rows.jsonl.gz", rows)
    assert r.status_code == 413 and r.json()["detail"]["setting"] == "CGD_MAX_DATASET_ITEMS", r.text
    # 2. Gzipped blank lines: over CGD_MAX_DECOMPRESSED_BYTES (test: 64 MiB), answered fast.
    blanks = gzip.compress(b"\n" * (80 * 1024**2), 9)
    t = time.monotonic()
    r = _upload(client, "blank.jsonl.gz", blanks)
    assert r.status_code == 413, r.text
    assert r.json()["detail"]["setting"] == "CGD_MAX_DECOMPRESSED_BYTES", r.text
    assert time.monotonic() - t < 15  # was minutes of CPU inside an open COPY
    # ... and under the limit, blank lines cost nothing and carry no row.
    r = _upload(client, "few.jsonl.gz", gzip.compress(b"\n" * 10**6 + b'{"prompt": "p"}\n'))
    assert r.status_code == 201 and r.json()["num_items"] == 1, r.text
    assert client.get(f"/v1/datasets/{r.json()['id']}/items").json()["data"][0]["line"] == 1_000_001
    assert client.get("/v1/datasets").json()["data"][0]["id"] == r.json()["id"]  # nothing else


def _parquet(**columns: Any) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf, compression="zstd")
    return buf.getvalue()


@pytest.mark.integration
def test_parquet_dictionary_bomb_is_refused_before_it_is_expanded(client) -> None:  # type: ignore[no-untyped-def]
    import pyarrow as pa

    big = "x" * (2 * 1024**2)  # over CGD_MAX_LINE_BYTES (test: 1 MiB) once decoded
    data = _parquet(prompt=pa.array([big] * 1000).dictionary_encode())
    assert len(data) < 2000
    r = _upload(client, "bomb.parquet", data)
    assert r.status_code == 422 and "CGD_MAX_LINE_BYTES" in r.text, r.text
    assert r.json()["detail"]["line"] == 1
    # A long value repeated inside each row's list: also refused, row 1.
    nested = pa.array([["y" * 4096] * 1000] * 100, pa.list_(pa.dictionary(pa.int32(), pa.string())))
    r = _upload(client, "nested.parquet", _parquet(prompt=pa.array(["p"] * 100), x=nested))
    assert r.status_code == 422 and r.json()["detail"]["line"] == 1, r.text
    # Many rows of a value under the line limit: over the decoded-bytes budget (64 MiB).
    mid = "z" * (512 * 1024)
    r = _upload(client, "many.parquet", _parquet(prompt=pa.array([mid] * 200).dictionary_encode()))
    assert r.status_code == 413 and "CGD_MAX_DECOMPRESSED_BYTES" in r.text, r.text
    # A normal Parquet file still loads.
    ok = _parquet(prompt=pa.array(["q1", "q2"]), answer=pa.array(["1", "2"]))
    r = _upload(client, "ok.parquet", ok)
    assert r.status_code == 201 and r.json()["num_items"] == 2, r.text


@pytest.mark.integration
def test_names_and_filenames_are_checked(client) -> None:  # type: ignore[no-untyped-def]
    row = b'{"prompt": "p"}\n'
    for form, name, field in (
        ({"name": "n" * 301}, "d.jsonl", "name"),
        ({"name": "a\x00b"}, "d.jsonl", "name"),
        ({}, "f" * 501 + ".jsonl", "file"),
    ):
        r = _upload(client, name, row, **form)
        assert r.status_code == 422 and r.json()["detail"]["field"] == field, r.text
    r = _upload(client, "g" * 400 + ".jsonl", row)  # a long filename: the name is cut to fit
    assert r.status_code == 201 and len(r.json()["name"]) == 300, r.text
    for body in ({"name": "n" * 301, "job_ids": []}, {"name": "a\x00", "job_ids": []}):
        r = client.post("/v1/snapshots", json=body)
        assert r.status_code == 422 and "name" in r.json()["detail"]["field"], r.text
    ids = [str(uuid.uuid4()) for _ in range(101)]
    r = client.post("/v1/snapshots", json={"job_ids": ids})
    assert r.status_code == 422 and "job_ids" in r.json()["detail"]["field"], r.text
    r = client.get("/v1/jobs", params={"cursor": base64.urlsafe_b64encode(b"[true]").decode()})
    assert r.status_code == 422, r.text


@pytest.mark.integration
def test_stale_spool_files_are_removed_at_start(api_server, tmp_path) -> None:  # type: ignore[no-untyped-def]

    from tests.conftest import _wait_http, free_port, start_api

    spool = tmp_path / "spool"
    spool.mkdir()
    dead = spool / "cgd-upload-999999999-abc"  # no such pid
    dead.write_bytes(b"x" * 1000)
    live = spool / f"cgd-upload-{os.getpid()}-abc"  # a live process's (this test's)
    live.write_bytes(b"y")
    port = free_port()
    # ... and a `*` allow-list is an explicit opt-in the API warns about.
    env = {**api_server.env, "CGD_UPLOAD_TMP_DIR": str(spool), "CGD_ENDPOINT_ALLOWLIST": "*"}
    log = tmp_path / "api.log"
    proc = start_api(env, port, log)
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        assert not dead.exists() and live.exists()
        text = log.read_text()
        assert "CGD_ENDPOINT_ALLOWLIST is *" in text and "removed 1 upload spool" in text, text
    finally:
        proc.terminate()
        proc.wait(10)


# --- secrets -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_endpoint_keys_are_sealed_at_rest_and_never_shown(  # type: ignore[no-untyped-def]
    client, dataset, sim, sessionmaker_, api_server
) -> None:
    from sqlalchemy import select

    from cgd.db.models import Job

    key = "sk-" + secrets.token_hex(16)
    r = client.post("/v1/jobs", json=_job(dataset, sim.base_url, api_key=key))
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    with sessionmaker_() as s:
        stored = s.scalar(select(Job.spec).where(Job.id == uuid.UUID(job_id)))
    assert key not in json.dumps(stored)
    assert stored["teacher"]["api_key"].startswith("cgd-sealed:v1:")
    for path in (f"/v1/jobs/{job_id}", "/v1/jobs"):
        assert key not in client.get(path).text
    # Idempotent replays still match (keys compared by keyed digest, not by ciphertext).
    h = {"Idempotency-Key": "sealed-1"}
    body = _job(dataset, sim.base_url, api_key=key)
    a = client.post("/v1/jobs", json=body, headers=h).json()["id"]
    assert client.post("/v1/jobs", json=body, headers=h).json()["id"] == a
    # The worker opens it with the same secret (cgd.secrets.open_spec), nothing else can.
    from cgd.secrets import SecretUnavailable, open_spec
    from cgd.settings import Settings

    opened = open_spec(stored, Settings(secret_key=api_server.env["CGD_SECRET_KEY"]))
    assert opened["teacher"]["api_key"] == key
    with pytest.raises(SecretUnavailable):
        open_spec(stored, Settings(secret_key=None))


@pytest.mark.integration
def test_api_refuses_to_start_with_stored_keys_and_no_secret(  # type: ignore[no-untyped-def]
    client, dataset, sim, api_server
) -> None:
    import subprocess
    import sys

    from tests.conftest import free_port

    body = _job(dataset, sim.base_url, api_key="sk-" + secrets.token_hex(8))
    assert client.post("/v1/jobs", json=body).status_code == 202
    env = {k: v for k, v in api_server.env.items() if k != "CGD_SECRET_KEY"}
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "api", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "CGD_SECRET_KEY is not set" in out.stdout + out.stderr, out.stderr[-2000:]


@pytest.mark.integration
def test_userinfo_is_stripped_from_public_specs() -> None:
    from cgd.generation.spec import JobSpec

    spec = JobSpec.model_validate(
        {
            "dataset_id": str(uuid.uuid4()),
            "student": None,
            "teacher": {"base_url": "http://user:pw@old-host:8000/v1", "model": "t"},
        }
    )
    assert "pw" not in json.dumps(spec.public())  # jobs stored before URLs were checked


# --- run tokens --------------------------------------------------------------------------------


def _ready_snapshot(sessionmaker_, team_id: uuid.UUID) -> uuid.UUID:  # type: ignore[no-untyped-def]
    from cgd.db.models import Snapshot

    with sessionmaker_() as s:
        snap = Snapshot(team_id=team_id, name="s", status="ready", job_ids=[], spec={}, num_items=1)
        s.add(snap)
        s.commit()
        return snap.id


def _team_id(sessionmaker_, client: httpx.Client) -> uuid.UUID:  # type: ignore[no-untyped-def]
    from cgd.auth import authenticate

    with sessionmaker_() as s:
        return authenticate(s, client.headers["Authorization"])


def _new_run(sessionmaker_, team_id: uuid.UUID) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    from cgd.db.engine import session_scope
    from cgd.runs.ops import create_run
    from cgd.runs.schemas import TrainingRunSpec
    from cgd.settings import Settings

    snap = _ready_snapshot(sessionmaker_, team_id)
    spec = TrainingRunSpec.model_validate(
        {"snapshot_id": str(snap), "base_model": "m", "eval": {"sets": []}}
    )
    with session_scope(sessionmaker_) as s:
        run, token = create_run(s, team_id, spec, Settings(base_models="m=/nonexistent/model"))
        return str(run.id), token


@pytest.mark.integration
def test_run_token_dies_with_its_run(client, sessionmaker_, api_server) -> None:  # type: ignore[no-untyped-def]
    run_id, token = _new_run(sessionmaker_, _team_id(sessionmaker_, client))
    trainer = httpx.Client(
        base_url=api_server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    base = f"/v1/training-runs/{run_id}"
    assert trainer.get(f"{base}/spec").status_code == 200
    # Events are typed: a string step or a list of accuracies is a 422, not a 500.
    for data in ({"step": "three"}, {"accuracy": [0.9]}, {"step": 1, "total_steps": "x"}):
        kind = "eval" if "accuracy" in data else "step"
        r = trainer.post(f"{base}/events", json={"type": kind, "data": data})
        assert r.status_code == 422, (data, r.text)
    ok = trainer.post(f"{base}/events", json={"type": "eval", "data": {"accuracy": {"m": 0.31}}})
    assert ok.status_code == 200, ok.text
    done = {"type": "status", "data": {"status": "completed"}}
    assert trainer.post(f"{base}/events", json=done).status_code == 200
    # The run is over: the token neither reads the data nor rewrites the results.
    assert trainer.get(f"{base}/data").status_code == 401
    assert trainer.get(f"{base}/spec").status_code == 401
    forged = {"type": "eval", "data": {"accuracy": {"m": 0.99}}}
    r = trainer.post(f"{base}/events", json=forged)
    assert r.status_code == 401 and "expired" in r.text, r.text
    r = trainer.post(f"{base}/events", json={"type": "artifact", "data": {"kind": "model"}})
    assert r.status_code == 401
    run = client.get(base).json()
    assert run["eval"]["m"]["accuracy"] == 0.31 and "model_path" not in run["artifacts"], run


@pytest.mark.integration
@pytest.mark.slow
def test_run_token_is_in_no_log_line(client, sessionmaker_, start_worker, api_server) -> None:  # type: ignore[no-untyped-def]
    from cgd.runs.ops import create as create_run_message
    from cgd.runs.schemas import TrainingRunSpec
    from cgd.settings import Settings
    from services.worker.celery_app import make_celery, send

    team = _team_id(sessionmaker_, client)
    snap = _ready_snapshot(sessionmaker_, team)
    spec = TrainingRunSpec.model_validate(
        {"snapshot_id": str(snap), "base_model": "m", "eval": {"sets": []}}
    )
    from cgd.db.engine import session_scope

    with session_scope(sessionmaker_) as s:
        run, messages = create_run_message(s, team, spec, Settings(base_models="m=/nonexistent"))
    token = messages[0][3]["cgd_run_token"]  # type: ignore[misc]
    assert token not in json.dumps(messages[0][1])  # not an argument
    worker = start_worker("trainer", CGD_LOG_LEVEL="DEBUG")
    send(make_celery(Settings(broker_url=api_server.env["CGD_BROKER_URL"])), messages)
    deadline = time.monotonic() + 90
    while client.get(f"/v1/training-runs/{run.id}").json()["status"] not in ("failed",):
        assert time.monotonic() < deadline, worker.log.read_text()[-3000:]
        time.sleep(0.5)
    log = worker.log.read_text()
    assert "received" in log and str(run.id) in log, log[-3000:]  # the trainer did get it
    assert token not in log


# --- snapshots and exports ---------------------------------------------------------------------


@pytest.mark.integration
def test_snapshot_of_an_unfinished_job_is_409(client, dataset, sim) -> None:  # type: ignore[no-untyped-def]
    job = client.post("/v1/jobs", json=_job(dataset, sim.base_url)).json()["id"]  # no worker
    r = client.post("/v1/snapshots", json={"job_ids": [job, job]})
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert detail["job_id"] == job and detail["status"] == "queued", detail
    r = client.post(
        "/v1/snapshots", json={"job_ids": [job, job], "allow_partial": True, "name": "数据集-v1"}
    )
    assert r.status_code == 201, r.text
    snap = r.json()
    assert snap["job_ids"] == [job] and snap["num_items"] == 0, snap  # deduplicated
    # Nothing to train on.
    r = client.post("/v1/training-runs", json={"snapshot_id": snap["id"], "base_model": "m"})
    assert r.status_code == 422 and r.json()["detail"]["field"] == "snapshot_id", r.text
    # A non-ASCII name exports with an RFC 6266 header; a hostile one can't add parameters.
    r = client.get(f"/v1/snapshots/{snap['id']}/export")
    assert r.status_code == 200, r.text
    assert "filename*=UTF-8''%E6%95%B0" in r.headers["content-disposition"]
    evil = client.post(
        "/v1/snapshots",
        json={"job_ids": [job], "allow_partial": True, "name": 'a"; filename="evil.exe'},
    ).json()
    header = client.get(f"/v1/snapshots/{evil['id']}/export").headers["content-disposition"]
    assert header.count("filename=") == 1 and 'filename="evil.exe"' not in header, header
    # The Hub folder is an export too: the same download name.
    hub = client.get(f"/v1/snapshots/{evil['id']}/export-hub")
    assert hub.status_code == 200, hub.status_code
    header = hub.headers["content-disposition"]
    assert header.count("filename=") == 1 and 'filename="evil.exe"' not in header, header


# --- operator key management -------------------------------------------------------------------


@pytest.mark.integration
def test_admin_lists_and_revokes_keys(api_server, sessionmaker_) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    from tests.conftest import admin, make_key

    team = f"team-{secrets.token_hex(4)}"
    key = make_key(sessionmaker_, team)
    key_id = key.split("_")[1]

    def cgd(*args: str) -> subprocess.CompletedProcess[str]:
        return admin(api_server, *args)

    listed = cgd("list-keys", "--team", team)
    assert listed.returncode == 0 and key_id in listed.stdout, listed.stderr
    assert key.split("_", 2)[2] not in listed.stdout  # never the secret
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{api_server.url}/v1/jobs", headers=headers).status_code == 200
    revoked = cgd("revoke-key", key_id)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout, revoked.stderr
    deadline = time.monotonic() + float(api_server.env.get("CGD_KEY_CACHE_TTL_S", "10")) + 5
    while httpx.get(f"{api_server.url}/v1/jobs", headers=headers).status_code != 401:
        assert time.monotonic() < deadline, "revoked key still accepted after the cache TTL"
        time.sleep(0.5)
    assert cgd("revoke-key", key_id).returncode == 1  # already revoked


# --- private metrics (issue 26) ----------------------------------------------------------------


@pytest.mark.integration
def test_api_metrics_need_the_metrics_token(api_server, client) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import METRICS_AUTH

    url = f"{api_server.url}/metrics"
    bare = httpx.get(url)
    assert bare.status_code == 401, bare.status_code
    assert "CGD_METRICS_TOKEN" in bare.json()["detail"]["reason"]
    assert "cgd_" not in bare.text
    # A team's own API key does not open the deployment-wide series.
    team = httpx.get(url, headers={"Authorization": client.headers["Authorization"]})
    assert team.status_code == 403 and "cgd_" not in team.text, team.status_code
    wrong = httpx.get(url, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 403, wrong.status_code
    served = httpx.get(url, headers=METRICS_AUTH)
    assert served.status_code == 200 and "cgd_http_requests_total" in served.text


@pytest.mark.integration
def test_api_metrics_refused_when_no_token_is_set(api_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import METRICS_AUTH, _wait_http, free_port, start_api

    port = free_port()
    env = {k: v for k, v in api_server.env.items() if k != "CGD_METRICS_TOKEN"}
    proc = start_api(env, port, tmp_path / "api.log")
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=METRICS_AUTH)
        assert r.status_code == 403 and "cgd_" not in r.text, r.status_code
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.integration
def test_worker_metrics_listen_on_loopback_only(start_worker) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import free_port

    port = free_port()
    start_worker(CGD_WORKER_METRICS_PORT=str(port))
    assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 200
    # 127.0.0.2 reaches a socket bound to 0.0.0.0 but not one bound to 127.0.0.1 (what any
    # non-loopback address would see).
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.2:{port}/metrics", timeout=5)
