"""Datasets over real HTTP against a real API process and a real Postgres."""

from __future__ import annotations

import gzip
import io
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from cgd.db.models import Dataset, DatasetItem
from tests.conftest import METRICS_AUTH, data_file

pytestmark = pytest.mark.integration


def upload(
    client: httpx.Client,
    filename: str,
    content: bytes,
    headers: dict[str, str] | None = None,
    **fields: str,
) -> httpx.Response:
    return client.post(
        "/v1/datasets",
        files={"file": (filename, content)},
        data=fields,
        headers=headers or {},
    )


def jsonl(rows: list[Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def all_items(client: httpx.Client, dataset_id: str, limit: int = 1000) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        r = client.get(f"/v1/datasets/{dataset_id}/items", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        items.extend(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def team_has_nothing(client: httpx.Client, sessionmaker_) -> None:  # type: ignore[no-untyped-def]
    """No dataset row for the caller's team, and no orphan items anywhere."""
    assert client.get("/v1/datasets").json()["data"] == []
    with sessionmaker_() as s:
        orphans = s.scalar(
            select(func.count())
            .select_from(DatasetItem)
            .where(~DatasetItem.dataset_id.in_(select(Dataset.id)))
        )
        assert orphans == 0


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.slow
def test_gsm8k_round_trips_exactly(client: httpx.Client) -> None:
    raw = (data_file("gsm8k_train.jsonl")).read_bytes()
    r = upload(client, "gsm8k_train.jsonl", raw)
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["num_items"] == 7473
    assert ds["fields"]["prompt_field"] == "question"
    assert ds["fields"]["reference_field"] == "answer"
    assert ds["stats"]["rows"] == 7473
    assert ds["stats"]["share_with_reference"] == 1.0
    items = all_items(client, ds["id"])
    source = [json.loads(line) for line in raw.splitlines()]
    assert len(items) == len(source)
    for i, (item, row) in enumerate(zip(items, source, strict=True)):
        assert item["idx"] == i and item["line"] == i + 1
        assert item["prompt"] == row["question"]
        assert item["reference"] == row["answer"]
        assert item["extra"] is None


def test_math500_round_trips_exactly(client: httpx.Client) -> None:
    raw = (data_file("math500.jsonl")).read_bytes()
    r = upload(client, "math500.jsonl", raw, name="math500")
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["num_items"] == 500 and ds["name"] == "math500"
    assert ds["fields"]["prompt_field"] == "problem"
    assert ds["fields"]["reference_field"] == "answer"  # `answer` wins over `solution`
    assert ds["fields"]["solution_field"] == "solution"  # kept too: sft trains on it
    assert ds["stats"]["share_with_solution"] == 1.0
    items = all_items(client, ds["id"], limit=73)  # odd page size: exercises the cursor
    source = [json.loads(line) for line in raw.splitlines()]
    assert [i["idx"] for i in items] == list(range(500))
    for item, row in zip(items, source, strict=True):
        rebuilt = {
            "problem": item["prompt"],
            "answer": item["reference"],
            "solution": item["solution"],
            **item["extra"],
        }
        assert rebuilt == row


def test_csv_gzip_parquet_and_mapping(client: httpx.Client) -> None:
    rows = [
        {"uid": f"q{i}", "text": f"What is {i}+{i}?", "gold": str(2 * i), "draft": f"{2 * i}"}
        for i in range(50)
    ]
    mapping = {
        "prompt_field": "text",
        "reference_field": "gold",
        "response_field": "draft",
        "id_field": "uid",
    }
    csv_bytes = (
        "uid,text,gold,draft\n"
        + "".join(f'{r["uid"]},"{r["text"]}",{r["gold"]},{r["draft"]}\n' for r in rows)
    ).encode()
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    files = {
        "d.csv": csv_bytes,
        "d.jsonl.gz": gzip.compress(jsonl(rows)),
        "d.parquet": buf.getvalue(),
        "d.jsonl": jsonl(rows),
    }
    for name, content in files.items():
        r = upload(client, name, content, **mapping)
        assert r.status_code == 201, (name, r.text)
        ds = r.json()
        assert ds["format"] == name.split(".", 1)[1]
        items = all_items(client, ds["id"])
        got = [(i["item_id"], i["prompt"], i["reference"], i["response"]) for i in items]
        assert got == [(r["uid"], r["text"], r["gold"], r["draft"]) for r in rows], name
        assert all(i["extra"] is None for i in items)


def test_numeric_reference_and_default_ids(client: httpx.Client) -> None:
    r = upload(client, "amc.jsonl", jsonl([{"problem": "p1", "answer": 27.0, "id": 5}]))
    assert r.status_code == 201, r.text
    [item] = all_items(client, r.json()["id"])
    assert item["reference"] == "27.0"
    assert item["item_id"] == "0"  # no id_field: rows are numbered
    assert item["extra"] == {"id": 5}


# --- all-or-nothing on bad input ------------------------------------------------------------

GOOD = {"question": "What is 1+1?", "answer": "#### 2"}


def _bad_cases() -> dict[str, tuple[str, bytes, dict[str, str], int | None, str]]:
    """name → (filename, content, form fields, expected line, reason substring)."""
    good56 = jsonl([GOOD] * 56)
    return {
        "malformed_json_line_57": (
            "a.jsonl",
            good56 + b'{"question": "x", oops}\n' + jsonl([GOOD]),
            {},
            57,
            "malformed JSON",
        ),
        "invalid_utf8": ("a.jsonl", jsonl([GOOD]) + b'{"question": "\xff\xfe"}\n', {}, 2, "UTF-8"),
        "missing_prompt": ("a.jsonl", jsonl([GOOD, {"answer": "3"}]), {}, 2, "missing prompt"),
        "empty_prompt": ("a.jsonl", jsonl([GOOD, {"question": "  "}]), {}, 2, "empty prompt"),
        "prompt_not_string": ("a.jsonl", jsonl([GOOD, {"question": 7}]), {}, 2, "must be a string"),
        "non_object_line": ("a.jsonl", jsonl([GOOD, [1, 2]]), {}, 2, "JSON object"),
        "duplicate_ids": (
            "a.jsonl",
            jsonl([{"id": "a", **GOOD}, {"id": "b", **GOOD}, {"id": "a", **GOOD}]),
            {"id_field": "id"},
            3,
            "duplicate id 'a' (first at line 1)",
        ),
        "empty_file": ("a.jsonl", b"", {}, None, "no rows"),
        "blank_lines_only": ("a.jsonl", b"\n\n  \n", {}, None, "no rows"),
        "unsupported_extension": ("a.txt", jsonl([GOOD]), {}, None, "unsupported file extension"),
        "huge_integer": (
            "a.jsonl",
            jsonl([GOOD]) + b'{"question": "q", "n": ' + b"9" * 10_000 + b"}\n",
            {},
            2,
            "malformed JSON",
        ),
        "deep_nesting": (
            "a.jsonl",
            jsonl([GOOD]) + b'{"question": "q", "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}\n",
            {},
            2,
            "malformed JSON",
        ),
        "nesting_over_limit": (
            "a.jsonl",
            jsonl([GOOD]) + b'{"question": "q", "x": ' + b"[" * 100 + b"]" * 100 + b"}\n",
            {},
            2,
            "nesting deeper",
        ),
        "nul_character": ("a.jsonl", jsonl([GOOD, {"question": "a\u0000b"}]), {}, 2, "NUL"),
        "corrupt_gzip": (
            "a.jsonl.gz",
            gzip.compress(jsonl([GOOD] * 200))[:-40],
            {},
            None,
            "compressed",
        ),
        "not_gzip": ("a.jsonl.gz", jsonl([GOOD]), {}, 1, "not a gzip"),
        "corrupt_parquet": ("a.parquet", b"PAR1" + b"\x00" * 100 + b"PAR1", {}, None, "Parquet"),
        "csv_wrong_columns": ("a.csv", b"question,answer\nq1,1\nq2,2,3\n", {}, 3, "columns"),
        "csv_invalid_utf8": ("a.csv", b"question,answer\nq1,1\nq\xff,2\n", {}, 3, "UTF-8"),
        "explicit_field_absent": (
            "a.jsonl",
            jsonl([GOOD]),
            {"prompt_field": "nope"},
            1,
            "missing prompt field 'nope'",
        ),
        "no_known_prompt_field": ("a.jsonl", jsonl([{"text": "x"}]), {}, 1, "no prompt field"),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_input_is_rejected_and_nothing_written(client, sessionmaker_, case: str) -> None:  # type: ignore[no-untyped-def]
    filename, content, fields, line, reason = _bad_cases()[case]
    r = upload(client, filename, content, **fields)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "InvalidDataset", body
    assert body["detail"]["line"] == line or (
        line is None and case == "corrupt_gzip" and isinstance(body["detail"]["line"], int)
    ), body
    assert reason in body["detail"]["reason"], body
    team_has_nothing(client, sessionmaker_)


def test_line_over_limit_keeps_memory_bounded(client, api_server, sessionmaker_) -> None:  # type: ignore[no-untyped-def]
    """A single 50 MB line: 422 naming line 2; the server never holds the line in memory."""
    before = _peak_rss_kb(api_server.pid)
    content = jsonl([GOOD]) + b'{"question": "' + b"x" * (50 * 1024**2) + b'"}\n'
    r = upload(client, "big.jsonl", content)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["line"] == 2
    assert "longer than the limit" in r.json()["detail"]["reason"]
    growth_mb = (_peak_rss_kb(api_server.pid) - before) / 1024
    assert growth_mb < 30, f"API peak RSS grew by {growth_mb:.0f} MB"
    team_has_nothing(client, sessionmaker_)


def test_file_over_size_limit_is_413(client, sessionmaker_) -> None:  # type: ignore[no-untyped-def]
    content = jsonl([GOOD]) * (61 * 1024**2 // len(jsonl([GOOD])) + 1)
    r = upload(client, "big.jsonl", content)
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "PayloadTooLarge"
    team_has_nothing(client, sessionmaker_)


def test_not_multipart_and_missing_file(client: httpx.Client) -> None:
    r = client.post("/v1/datasets", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "InvalidRequest"
    r = client.post("/v1/datasets", data={"name": "x"}, files={"other": ("x", b"")})
    assert r.status_code == 422


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


# --- idempotency ---------------------------------------------------------------------------


def test_idempotency_key_creates_one_dataset(client: httpx.Client) -> None:
    content = jsonl([GOOD] * 3)
    headers = {"Idempotency-Key": "upload-1"}
    first = upload(client, "a.jsonl", content, headers=headers, name="x")
    second = upload(client, "a.jsonl", content, headers=headers, name="x")
    assert first.status_code == 201 and second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert len(client.get("/v1/datasets").json()["data"]) == 1
    other_body = upload(client, "a.jsonl", jsonl([GOOD] * 4), headers=headers, name="x")
    assert other_body.status_code == 409
    assert other_body.json()["error"] == "IdempotencyKeyReused"


def test_concurrent_uploads_with_one_key_create_one_dataset(client: httpx.Client) -> None:
    content = jsonl([GOOD] * 2000)
    results: list[httpx.Response] = []

    def send() -> None:
        results.append(upload(client, "a.jsonl", content, headers={"Idempotency-Key": "race"}))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [201] * 4, [r.text for r in results]
    assert len({r.json()["id"] for r in results}) == 1
    assert len(client.get("/v1/datasets").json()["data"]) == 1


# --- auth, isolation, listing, deletion ------------------------------------------------------


def test_missing_or_invalid_key_is_401(api_server) -> None:  # type: ignore[no-untyped-def]
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer cgd_000000000000_wrongsecret"},
    ):
        r = httpx.get(f"{api_server.url}/v1/datasets", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"] == "Unauthorized"
    r = httpx.post(f"{api_server.url}/v1/datasets", files={"file": ("a.jsonl", jsonl([GOOD]))})
    assert r.status_code == 401


def test_other_team_gets_404_and_sees_nothing(client, other_client) -> None:  # type: ignore[no-untyped-def]
    ds = upload(client, "a.jsonl", jsonl([GOOD])).json()
    for path in (f"/v1/datasets/{ds['id']}", f"/v1/datasets/{ds['id']}/items"):
        r = other_client.get(path)
        assert r.status_code == 404 and r.json()["error"] == "DatasetNotFound"
        assert GOOD["question"] not in r.text
    assert other_client.delete(f"/v1/datasets/{ds['id']}").status_code == 404
    assert other_client.get("/v1/datasets").json()["data"] == []
    assert client.get(f"/v1/datasets/{ds['id']}").status_code == 200  # still there


def test_list_pagination_and_delete(client: httpx.Client) -> None:
    ids = [upload(client, "a.jsonl", jsonl([GOOD]), name=f"d{i}").json()["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = client.get("/v1/datasets", params=params).json()
        seen += [d["id"] for d in body["data"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == ids[::-1]  # newest first, each exactly once
    assert client.delete(f"/v1/datasets/{ids[0]}").status_code == 204
    assert client.get(f"/v1/datasets/{ids[0]}").status_code == 404
    assert client.get(f"/v1/datasets/{ids[0]}/items").status_code == 404


@pytest.mark.parametrize("cursor", ["garbage", "W10", "WyJ4Il0", "WyJ4IiwieSJd"])
def test_bad_cursor_and_params_are_422(client: httpx.Client, cursor: str) -> None:
    ds = upload(client, "a.jsonl", jsonl([GOOD])).json()
    assert client.get("/v1/datasets", params={"cursor": cursor}).status_code == 422
    r = client.get(f"/v1/datasets/{ds['id']}/items", params={"cursor": cursor})
    assert r.status_code == 422
    assert client.get("/v1/datasets", params={"limit": 0}).status_code == 422
    assert client.get("/v1/datasets/not-a-uuid").status_code == 422


# --- operations ----------------------------------------------------------------------------


def test_operations_endpoints(api_server) -> None:  # type: ignore[no-untyped-def]
    assert httpx.get(f"{api_server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{api_server.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    metrics = httpx.get(f"{api_server.url}/metrics", headers=METRICS_AUTH).text
    assert "cgd_http_requests_total" in metrics
    spec = httpx.get(f"{api_server.url}/openapi.json").json()
    post = spec["paths"]["/v1/datasets"]["post"]
    assert {"201", "401", "409", "413", "422"} <= set(post["responses"])
    assert "multipart/form-data" in post["requestBody"]["content"]


def test_json_element_over_limit_keeps_memory_bounded(client, api_server, sessionmaker_) -> None:  # type: ignore[no-untyped-def]
    """A .json array whose second element is 50 MB: 422 naming index 1, read in blocks (the
    element is given up once it passes CGD_MAX_LINE_BYTES, never held whole)."""
    before = _peak_rss_kb(api_server.pid)
    content = b'[{"question": "q"},\n{"question": "' + b"x" * (50 * 1024**2) + b'"}]'
    r = upload(client, "big.json", content)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["index"] == 1 and "line" not in r.json()["detail"]
    assert "longer than the limit" in r.json()["detail"]["reason"]
    growth_mb = (_peak_rss_kb(api_server.pid) - before) / 1024
    assert growth_mb < 30, f"API peak RSS grew by {growth_mb:.0f} MB"
    team_has_nothing(client, sessionmaker_)
