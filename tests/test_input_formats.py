"""Data in the shapes people have it: a .json array and chat-format rows become jobs and
triplets (real API, real worker, the simulator over HTTP), and the dataset's own columns (id,
source, difficulty) reach every triplet, every export layout and format, and the Hub export."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from cgd.simulator import SimulatorProcess
from tests.conftest import WorkerProcess, data_file, make_key

pytestmark = pytest.mark.integration

N = 12
LAYOUTS = ("native", "messages", "sharegpt", "prompt-completion", "alpaca")
CHAT_LAYOUTS = ("messages", "sharegpt", "prompt-completion")


def gsm8k(n: int) -> list[dict[str, Any]]:
    lines = data_file("gsm8k_train.jsonl").read_text().splitlines()[:n]
    return [json.loads(x) for x in lines]


def run_job(client: httpx.Client, dataset_id: str, sim: SimulatorProcess) -> str:
    body = {
        "dataset_id": dataset_id,
        "student": {"base_url": sim.base_url, "model": "student", "temperature": 0.0},
        "teacher": {"base_url": sim.base_url, "model": "teacher", "temperature": 0.0},
    }
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job_id = str(r.json()["id"])
    deadline = time.monotonic() + 120
    while (status := client.get(f"/v1/jobs/{job_id}").json())["status"] != "completed":
        assert status["status"] not in ("failed", "cancelled"), status
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    return job_id


def triplets(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/v1/jobs/{job_id}/triplets", params={"limit": 500})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


@pytest.fixture(scope="module")
def stack(api_server, sessionmaker_, tmp_path_factory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """A worker and a simulator that knows the questions (and the chat transcripts) asked."""
    tmp = tmp_path_factory.mktemp("formats")
    rows = gsm8k(N)
    refs = [{"question": r["question"], "answer": r["answer"]} for r in rows]
    refs += [{"question": transcript(r), "answer": r["answer"]} for r in rows]
    (tmp / "refs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refs))
    client = httpx.Client(
        base_url=api_server.url,
        headers={"Authorization": f"Bearer {make_key(sessionmaker_)}"},
        timeout=120,
    )
    sim = SimulatorProcess(
        ["--port", "0", "--slots", "16", "--latency", "0.01", "--dataset", str(tmp / "refs.jsonl")]
    )
    worker = WorkerProcess(api_server.env, tmp / "worker.log")
    try:
        yield {"client": client, "sim": sim, "rows": rows, "tmp": tmp}
    finally:
        worker.kill()
        sim.stop()
        client.close()


SYSTEM = "You are a careful tutor."


def transcript(row: dict[str, Any]) -> str:
    """What a system + user conversation becomes as the prompt (docs/input-formats.md)."""
    return f"System: {SYSTEM}\n\nUser: {row['question']}"


def own_columns(i: int) -> dict[str, Any]:
    return {"id": f"team-{i:03d}", "source": "gsm8k" if i % 2 else "web", "difficulty": i % 4}


@pytest.fixture(scope="module")
def json_job(stack) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A .json array upload with the team's own columns, run as a job, in a snapshot."""
    c = stack["client"]
    array = [
        {**own_columns(i), "question": r["question"], "answer": r["answer"]}
        for i, r in enumerate(stack["rows"])
    ]
    r = c.post("/v1/datasets", files={"file": ("team.json", json.dumps(array, indent=2))})
    assert r.status_code == 201, r.text
    assert r.json()["format"] == "json" and r.json()["num_items"] == N
    job_id = run_job(c, r.json()["id"], stack["sim"])
    snap = c.post("/v1/snapshots", json={"job_ids": [job_id], "split": {"val_fraction": 0.3}})
    assert snap.status_code == 201, snap.text
    return {"job_id": job_id, "snapshot": snap.json(), "array": array}


def test_a_json_array_upload_makes_a_job_whose_triplets_carry_the_own_columns(
    stack, json_job
) -> None:  # type: ignore[no-untyped-def]
    out = triplets(stack["client"], json_job["job_id"])
    assert len(out) == N and all(t["status"] == "verified" for t in out), out
    for t, src in zip(out, json_job["array"], strict=True):
        assert t["prompt"] == src["question"] and t["reference"] == src["answer"]
        assert t["extra"] == {k: src[k] for k in ("id", "source", "difficulty")}
        assert t["initial_response"] and t["critique"] and t["refined_response"]


def test_a_chat_format_upload_makes_a_job_and_triplets(stack) -> None:  # type: ignore[no-untyped-def]
    """Single-turn rows keep the question as it is; a system turn makes a transcript; the
    reference comes from the final assistant turn, or from a named field when there is one."""
    c, rows = stack["client"], stack["rows"]
    chat = []
    for i, r in enumerate(rows):
        user = {"role": "user", "content": r["question"]}
        if i % 3 == 0:
            turns = [user, {"role": "assistant", "content": r["answer"]}]
            chat.append({"messages": turns, "source": "chat"})
        elif i % 3 == 1:
            turns = [{"role": "system", "content": SYSTEM}, user]
            chat.append({"messages": turns, "answer": r["answer"], "source": "chat"})
        else:  # a plain row among chat rows
            chat.append({"question": r["question"], "answer": r["answer"], "source": "plain"})
    body = "".join(json.dumps(x) + "\n" for x in chat)
    r = c.post("/v1/datasets", files={"file": ("chat.jsonl", body)})
    assert r.status_code == 201, r.text
    job_id = run_job(c, r.json()["id"], stack["sim"])
    out = triplets(c, job_id)
    assert len(out) == N and all(t["status"] == "verified" for t in out), out
    for i, (t, r) in enumerate(zip(out, rows, strict=True)):
        assert t["prompt"] == (transcript(r) if i % 3 == 1 else r["question"]), t
        assert t["reference"] == r["answer"]
        assert t["extra"] == {"source": "plain" if i % 3 == 2 else "chat"}
        # The simulator's student is right on about half: the verifier read the references.
        assert t["initial_correct"] in (True, False) and t["refined_correct"] is True


def _export(c: httpx.Client, sid: str, layout: str, fmt: str) -> list[dict[str, Any]]:
    params = {"layout": layout, "format": fmt}
    r = c.get(f"/v1/snapshots/{sid}/export", params=params)
    assert r.status_code == 200, r.text
    if fmt == "jsonl":
        return [json.loads(x) for x in r.text.splitlines()]
    return list(pq.read_table(io.BytesIO(r.content)).to_pylist())


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_own_columns_are_in_every_export_layout_and_format(stack, json_job, layout, fmt) -> None:  # type: ignore[no-untyped-def]
    c, snap = stack["client"], json_job["snapshot"]
    rows = _export(c, snap["id"], layout, fmt)
    assert len(rows) == snap["num_items"] == N
    got = [
        row["metadata"]
        if layout in CHAT_LAYOUTS
        else {k: row[k] for k in ("id", "source", "difficulty")}
        for row in rows
    ]
    expected = [{k: a[k] for k in ("id", "source", "difficulty")} for a in json_job["array"]]
    # Exports are in snapshot order (by item); every row joins back to exactly one source row.
    assert sorted(got, key=lambda x: x["id"]) == expected
    if layout == "native":
        by_id = {a["id"]: a for a in json_job["array"]}
        assert all(row["prompt"] == by_id[row["id"]]["question"] for row in rows)


def test_own_columns_are_in_the_hub_export_and_the_card(stack, json_job) -> None:  # type: ignore[no-untyped-def]
    c, snap = stack["client"], json_job["snapshot"]
    card = c.get(f"/v1/snapshots/{snap['id']}/card").json()
    assert card["extra_columns"] == {"id": "string", "source": "string", "difficulty": "int64"}
    md = c.get(f"/v1/snapshots/{snap['id']}/card", params={"format": "markdown"}).text
    assert "| `id` | string |" in md and "| `difficulty` | int64 |" in md
    r = c.get(f"/v1/snapshots/{snap['id']}/export-hub")
    assert r.status_code == 200, r.text
    tmp: Path = stack["tmp"] / "hub"
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        tar.extractall(tmp, filter="data")
    rows = []
    for part in sorted((tmp / "data").glob("*.parquet")):
        rows += pq.read_table(part).to_pylist()
    assert len(rows) == N
    expected = [{k: a[k] for k in ("id", "source", "difficulty")} for a in json_job["array"]]
    got = [{k: row[k] for k in ("id", "source", "difficulty")} for row in rows]
    assert sorted(got, key=lambda x: x["id"]) == expected
    readme = (tmp / "README.md").read_text()
    assert '  - name: "difficulty"\n    dtype: int64' in readme
    assert "The dataset's own columns" in readme


def test_bad_json_and_chat_uploads_are_422_naming_where_and_write_nothing(client) -> None:  # type: ignore[no-untyped-def]
    bad_element = json.dumps([{"question": "a"}, {"question": "b"}, ["c"]])
    r = client.post("/v1/datasets", files={"file": ("d.json", bad_element)})
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["index"] == 2 and "JSON object" in r.json()["detail"]["reason"]
    dup = json.dumps([{"question": "a", "id": 1}, {"question": "b", "id": 1}])
    r = client.post("/v1/datasets", files={"file": ("d.json", dup)}, data={"id_field": "id"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["index"] == 1 and "first at index 0" in r.json()["detail"]["reason"]
    turns = [{"role": "user", "content": "q"}, {"role": "critic", "content": "x"}]
    r = client.post("/v1/datasets", files={"file": ("c.jsonl", json.dumps({"messages": turns}))})
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["field"] == "messages[1].role" and r.json()["detail"]["line"] == 1
    assert client.get("/v1/datasets").json()["data"] == []
