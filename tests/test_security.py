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
    assert "bad" in err and len(err.encode()) <= 260, err
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
    import subprocess
    import sys

    from tests.conftest import _wait_http, free_port

    spool = tmp_path / "spool"
    spool.mkdir()
    dead = spool / "cgd-upload-999999999-abc"  # no such pid
    dead.write_bytes(b"x" * 1000)
    live = spool / f"cgd-upload-{os.getpid()}-abc"  # a live process's (this test's)
    live.write_bytes(b"y")
    port = free_port()
    env = {**api_server.env, "CGD_UPLOAD_TMP_DIR": str(spool)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        assert not dead.exists() and live.exists()
    finally:
        proc.terminate()
        proc.wait(10)
