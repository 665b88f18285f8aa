"""Issue 12 end to end (real API, worker, simulator): teacher_solution and mode distill, worked
solutions as sft targets, boxed targets counted on the card, a team template pinned by a job."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from cgd.db.models import Generation
from cgd.simulator import SimulatorProcess
from tests.conftest import data_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 6
CRITIQUE = (
    "<question>\n{{ question }}\n</question>\n\n<student_answer>\n{{ answer }}\n"
    "</student_answer>\n\nCheck every step. End with exactly `Conclusion: right` or "
    "`Conclusion: wrong`."
)


def _upload(client: httpx.Client, rows: list[dict[str, Any]]) -> str:
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    r = client.post("/v1/datasets", files={"file": ("d.jsonl", body)})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _run(client: httpx.Client, sim: SimulatorProcess, dataset_id: str, **over: Any) -> str:
    endpoint = {"base_url": sim.base_url}
    body = {
        "dataset_id": dataset_id,
        "student": {**endpoint, "model": "student"},
        "teacher": {**endpoint, "model": "teacher"},
        **over,
    }
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job_id = str(r.json()["id"])
    deadline = time.monotonic() + 120
    while (status := client.get(f"/v1/jobs/{job_id}").json())["status"] not in (
        "completed",
        "failed",
    ):
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["status"] == "completed", status
    return job_id


def _export(client: httpx.Client, snap: str, mode: str) -> list[dict[str, Any]]:
    r = client.get(f"/v1/snapshots/{snap}/export", params={"layout": "messages", "mode": mode})
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines()]


def _snapshot(client: httpx.Client, job_id: str) -> dict[str, Any]:
    r = client.post("/v1/snapshots", json={"job_ids": [job_id]})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_distill_sft_and_boxed_targets_end_to_end(  # type: ignore[no-untyped-def]
    client, start_worker, sessionmaker_, tmp_path: Path
) -> None:
    math = [
        {"problem": r["problem"], "answer": r["answer"], "solution": r["solution"]}
        for r in data_rows("math500.jsonl")[:N]
    ]
    gsm = [
        {"question": r["question"], "answer": r["answer"]}
        for r in data_rows("gsm8k_train.jsonl")[:N]
    ]
    bare = [
        {"question": r["problem"], "answer": r["answer"]}
        for r in data_rows("math500.jsonl")[N : 2 * N]
    ]
    refs = tmp_path / "refs.jsonl"
    refs.write_text("".join(json.dumps(r) + "\n" for r in math + gsm + bare))
    sim = SimulatorProcess(
        ["--port", "0", "--slots", "16", "--latency", "0.01", "--dataset", str(refs)]
    )
    try:
        start_worker()
        assert (
            client.post("/v1/templates", json={"name": "steps", "critique": CRITIQUE}).status_code
            == 201
        )

        # MATH-style data keeps both the short answer and the worked solution.
        math_ds = _upload(client, math)
        ds = client.get(f"/v1/datasets/{math_ds}").json()
        assert ds["fields"]["reference_field"] == "answer"
        assert ds["fields"]["solution_field"] == "solution"
        item = client.get(f"/v1/datasets/{math_ds}/items").json()["data"][0]
        assert (item["reference"], item["solution"]) == (math[0]["answer"], math[0]["solution"])

        job = _run(client, sim, math_ds, teacher_solution=True, template="steps")
        trips = client.get(f"/v1/jobs/{job}/triplets").json()["data"]
        assert all(t["teacher_solution"] and t["solution"] for t in trips)
        with sessionmaker_() as s:
            rows = s.execute(
                select(Generation.stage, Generation.template_version, func.count())
                .where(Generation.job_id == uuid.UUID(job))
                .group_by(Generation.stage, Generation.template_version)
            ).all()
        assert sorted(rows) == sorted(
            (stage, "steps@1", N) for stage in ("probe", "critique", "refine", "solve")
        )
        by_stage = httpx.get(f"{sim.url}/sim/stats").json()["by_stage_model"]
        assert by_stage["solve"] == {"teacher": N}

        snap = _snapshot(client, job)["id"]
        by_prompt = {t["prompt"]: t for t in trips}
        for row in _export(client, snap, "distill"):
            user, answer = (m["content"] for m in row["messages"])
            assert answer == by_prompt[user]["teacher_solution"] and "\\boxed{" in answer
        for row in _export(client, snap, "sft"):
            user, answer = (m["content"] for m in row["messages"])
            assert answer == by_prompt[user]["solution"]  # the worked solution, not the answer
        card = client.get(f"/v1/snapshots/{snap}/card").json()
        assert card["targets"]["sft_source"] == {"solution": N}
        assert card["targets"]["distill"]["rows"] == N and card["warnings"] == []

        # GSM8K (`#### n`) and bare MATH answers, no teacher_solution: distill is refused.
        job2 = _run(client, sim, _upload(client, gsm + bare))
        snap2 = _snapshot(client, job2)["id"]
        r = client.get(
            f"/v1/snapshots/{snap2}/export", params={"layout": "messages", "mode": "distill"}
        )
        assert r.status_code == 409, r.text
        detail = r.json()["detail"]
        assert detail["snapshot_id"] == snap2 and detail["field"] == "teacher_solution"
        hub = client.get(f"/v1/snapshots/{snap2}/export-hub", params={"mode": "distill"})
        assert hub.status_code == 409 and hub.json()["error"] == "ModeUnavailable", hub.text
        assert detail["job_ids"] == [job2] and snap2 in detail["reason"]
        run = client.post(
            "/v1/training-runs", json={"snapshot_id": snap2, "base_model": "x", "mode": "distill"}
        )
        assert run.status_code == 409 and run.json()["error"] == "ModeUnavailable", run.text
        native = client.get(f"/v1/snapshots/{snap2}/export")
        assert native.status_code == 200  # the native layout carries every field, and no mode

        sft = [r["messages"][1]["content"] for r in _export(client, snap2, "sft")]
        assert len(sft) == 2 * N and all(t.rstrip().endswith("}") and "\\boxed{" in t for t in sft)
        assert not any("####" in t for t in sft)
        card2 = client.get(f"/v1/snapshots/{snap2}/card").json()
        assert card2["targets"]["sft"]["hashes"] == N and card2["targets"]["sft"]["bare"] == N
        assert card2["targets"]["sft_source"] == {"bare_answer": N, "reference": N}
        warnings = " ".join(card2["warnings"])
        assert f"{N} of {2 * N} sft targets are bare answers" in warnings
        assert "distill is unavailable" in warnings
        md = client.get(f"/v1/snapshots/{snap2}/card", params={"format": "markdown"}).text
        assert "> **Warning:**" in md and "## Targets" in md
    finally:
        sim.stop()


def _stage_counts(sessionmaker_, job_id: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with sessionmaker_() as s:
        return dict(
            s.execute(
                select(Generation.stage, func.count())
                .where(Generation.job_id == uuid.UUID(job_id))
                .group_by(Generation.stage)
            ).all()
        )


def test_a_failed_teacher_solution_resumes_alone(  # type: ignore[no-untyped-def]
    client, start_worker, sessionmaker_
) -> None:
    """The solve stage is resumed like the others: after it failed, retry-failed repeats only it
    (no second probe, critique or refine is stored or sent)."""
    sim = SimulatorProcess(
        ["--port", "0", "--slots", "8", "--latency", "0.01", "--rate-500", "1.0"]
        + ["--fault-stage", "solve"]
    )
    try:
        start_worker()
        rows = [{"question": f"What is {i} + 1?", "answer": f"#### {i + 1}"} for i in range(4)]
        ds = _upload(client, rows)
        endpoint = {"base_url": sim.base_url}
        body = {
            "dataset_id": ds,
            "student": {**endpoint, "model": "student"},
            "teacher": {**endpoint, "model": "teacher"},
            "teacher_solution": True,
        }
        job = client.post("/v1/jobs", json=body).json()["id"]
        deadline = time.monotonic() + 120
        while (status := client.get(f"/v1/jobs/{job}").json())["status"] != "failed":
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status["errors"] == {"server_error": 4}
        assert _stage_counts(sessionmaker_, job) == {"probe": 4, "critique": 4, "refine": 4}
        httpx.post(f"{sim.url}/sim/config", json={"rate_500": 0.0}).raise_for_status()
        before = httpx.get(f"{sim.url}/sim/stats").json()["by_stage_model"]
        assert client.post(f"/v1/jobs/{job}/retry-failed").status_code == 202
        while (status := client.get(f"/v1/jobs/{job}").json())["status"] != "completed":
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert _stage_counts(sessionmaker_, job) == {
            s: 4 for s in ("probe", "critique", "refine", "solve")
        }
        after = httpx.get(f"{sim.url}/sim/stats").json()["by_stage_model"]
        for stage in ("probe", "critique", "refine"):
            assert after[stage] == before[stage], stage
    finally:
        sim.stop()
