"""Quality numbers (initial/refined accuracy, fix and break rates, verdict agreement, truncation,
tokens per stage) in job status, snapshot stats, the card and the CLI: each one must equal the
count computed here from the triplets themselves."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from cgd.db.engine import session_scope
from cgd.db.models import Dataset, Generation, Job, JobItem, Team
from cgd.jobs.quality import job_quality, rates
from tests.conftest import ApiServer
from tests.test_jobs import create_job, job_body, triplets, upload_slice, wait_job
from tests.test_jobs import gsm8k_slice as gsm8k_slice  # noqa: F401  (fixture)
from tests.test_jobs import simulator as simulator  # noqa: F401  (fixture)


def expected_quality(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The quality numbers computed in Python from triplet dicts (the definition, spelt out)."""
    ver = [r for r in rows if r["status"] == "verified"]
    fin = [r for r in rows if r["status"] in ("verified", "failed")]

    def n(pred: Any, rs: list[dict[str, Any]] = ver) -> int:
        return sum(1 for r in rs if pred(r))

    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    init_judged = n(lambda r: r["initial_correct"] is not None)
    init_right = n(lambda r: r["initial_correct"] is True)
    ref_judged = n(lambda r: r["refined_correct"] is not None)
    ref_right = n(lambda r: r["refined_correct"] is True)
    wrong_judged = n(lambda r: r["initial_correct"] is False and r["refined_correct"] is not None)
    fixed = n(lambda r: r["initial_correct"] is False and r["refined_correct"] is True)
    right_judged = n(lambda r: r["initial_correct"] is True and r["refined_correct"] is not None)
    broken = n(lambda r: r["initial_correct"] is True and r["refined_correct"] is False)
    verdict_judged = n(lambda r: r["verdict"] is not None and r["initial_correct"] is not None)
    agrees = n(
        lambda r: (
            r["verdict"] is not None
            and r["initial_correct"] is not None
            and (r["verdict"] == "right") == r["initial_correct"]
        )
    )
    said_wrong = n(lambda r: r["verdict"] == "wrong" and r["initial_correct"] is not None)
    said_wrong_true = n(lambda r: r["verdict"] == "wrong" and r["initial_correct"] is False)
    initially_wrong = n(lambda r: r["initial_correct"] is False)
    truncated = n(lambda r: bool(r["truncated"]), fin)
    return {
        "initial_accuracy": ratio(init_right, init_judged),
        "refined_accuracy": ratio(ref_right, ref_judged),
        "fix_rate": ratio(fixed, wrong_judged),
        "break_rate": ratio(broken, right_judged),
        "verdict_agreement": ratio(agrees, verdict_judged),
        "wrong_verdict_precision": ratio(said_wrong_true, said_wrong),
        "wrong_verdict_recall": ratio(said_wrong_true, initially_wrong),
        "truncation_rate": ratio(truncated, len(fin)),
        "counts": {
            "finished": len(fin),
            "truncated": truncated,
            "verified": len(ver),
            "initial_judged": init_judged,
            "initial_right": init_right,
            "refined_judged": ref_judged,
            "refined_right": ref_right,
            "initially_wrong_judged": wrong_judged,
            "fixed": fixed,
            "initially_right_judged": right_judged,
            "broken": broken,
            "verdict_judged": verdict_judged,
            "verdict_agrees": agrees,
            "wrong_verdicts": said_wrong,
            "wrong_verdicts_true": said_wrong_true,
            "initially_wrong": initially_wrong,
        },
    }


def _without_tokens(q: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in q.items() if k != "tokens_by_stage"}


def test_rates_are_none_when_nothing_was_judged() -> None:
    q = rates({})
    assert q.initial_accuracy is None and q.fix_rate is None and q.truncation_rate is None
    assert rates({"initial_judged": 3, "initial_right": 1}).initial_accuracy == 0.3333


def test_job_quality_counts_every_combination(sessionmaker_) -> None:  # type: ignore[no-untyped-def]
    """Every combination of state, verdict, initial/refined correctness and truncation, written
    straight into job_items: the aggregate equals the count computed from the same rows."""
    combos = list(
        itertools.product(
            ("verified", "failed", "refined", "pending"),
            ("right", "wrong", None),
            (True, False, None),
            (True, False, None),
            (True, False),
        )
    )
    rows = [
        {
            "status": state,
            "verdict": verdict,
            "initial_correct": ic,
            "refined_correct": rc,
            "truncated": tr,
        }
        for state, verdict, ic, rc, tr in combos
    ]
    with session_scope(sessionmaker_) as s:
        team = Team(name=f"q-{uuid.uuid4().hex[:8]}")
        s.add(team)
        s.flush()
        ds = Dataset(team_id=team.id, name="q", format="jsonl", content_hash="x", num_items=1)
        s.add(ds)
        s.flush()
        job = Job(
            team_id=team.id,
            dataset_id=ds.id,
            spec={},
            template_version="t",
            total_items=len(rows),
            num_chunks=1,
        )
        s.add(job)
        s.flush()
        for i, r in enumerate(rows):
            s.add(
                JobItem(
                    job_id=job.id,
                    idx=i,
                    sample=0,
                    state=r["status"],
                    verdict=r["verdict"],
                    initial_correct=r["initial_correct"],
                    refined_correct=r["refined_correct"],
                    truncated=r["truncated"],
                )
            )
        for stage, (pt, ct) in {
            "probe": (10, 20),
            "critique": (30, 40),
            "refine": (50, 60),
        }.items():
            for i in range(3):
                s.add(
                    Generation(
                        job_id=job.id,
                        idx=i,
                        sample=0,
                        stage=stage,
                        text="x",
                        request={},
                        template_version="t",
                        prompt_tokens=pt,
                        completion_tokens=ct,
                    )
                )
        s.flush()
        q = job_quality(s, [job.id])[job.id].model_dump(mode="json")
        s.rollback()
    assert _without_tokens(q) == expected_quality(rows)
    assert q["tokens_by_stage"] == {
        "probe": {"prompt": 30, "completion": 60},
        "critique": {"prompt": 90, "completion": 120},
        "refine": {"prompt": 150, "completion": 180},
    }


@pytest.mark.integration
def test_quality_in_job_status_snapshot_card_and_cli(  # type: ignore[no-untyped-def]
    client,
    start_worker,
    simulator,  # noqa: F811
    gsm8k_slice,  # noqa: F811
    sessionmaker_,
    api_server: ApiServer,
) -> None:
    sim = simulator(
        "--slots", "32", "--latency", "0.01", "--accuracy", "0.5", "--no-verdict-rate", "0.2"
    )
    start_worker()
    ds = upload_slice(client, gsm8k_slice, 60)
    job_id = create_job(client, job_body(ds, sim))
    status = wait_job(client, job_id)
    assert status["status"] == "completed"
    rows = triplets(client, job_id)
    quality = status["quality"]
    expected = expected_quality(rows)
    assert _without_tokens(quality) == expected
    # A real mix, so the numbers say something: some fixed, some judged wrong, some no verdict.
    c = expected["counts"]
    assert c["verified"] == 60 and 0 < c["initial_right"] < 60 and c["verdict_judged"] < 60
    with sessionmaker_() as s:
        by_stage = {
            stage: {"prompt": int(p), "completion": int(ct)}
            for stage, p, ct in s.execute(
                select(
                    Generation.stage,
                    func.sum(Generation.prompt_tokens),
                    func.sum(Generation.completion_tokens),
                )
                .where(Generation.job_id == uuid.UUID(job_id))
                .group_by(Generation.stage)
            )
        }
    assert quality["tokens_by_stage"] == by_stage
    assert sum(t["prompt"] for t in by_stage.values()) == status["tokens"]["prompt"]
    # The list answers the same numbers.
    listed = {j["id"]: j for j in client.get("/v1/jobs").json()["data"]}
    assert listed[job_id]["quality"] == quality

    # Snapshot: over the rows it selected (a filter changes them).
    r = client.post("/v1/snapshots", json={"job_ids": [job_id], "filters": {"no_truncation": True}})
    assert r.status_code in (201, 202), r.text
    snap = r.json()
    assert snap["status"] == "ready"
    export = client.get(f"/v1/snapshots/{snap['id']}/export", params={"layout": "native"})
    native = [json.loads(line) for line in export.text.splitlines()]
    assert snap["stats"]["quality"] == {**expected_quality(native), "tokens_by_stage": None}
    card = client.get(f"/v1/snapshots/{snap['id']}/card").json()
    assert card["quality"] == snap["stats"]["quality"]
    qc = card["quality"]["counts"]
    assert "## Quality" in card["markdown"]
    assert "| fix rate (wrong -> right) | " in card["markdown"]
    assert f"{qc['fixed']}/{qc['initially_wrong_judged']} |" in card["markdown"]

    # CLI: `cgd jobs show` and `cgd snapshots show` print the quality line.
    env = {
        **os.environ,
        "CGD_API_URL": api_server.url,
        "CGD_API_KEY": client.headers["Authorization"].split()[1],
    }
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "jobs", "show", job_id],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pct = f"{100 * quality['initial_accuracy']:.1f}%"
    assert f"quality: accuracy {pct} -> " in out
    assert (
        f"fixed {100 * quality['fix_rate']:.1f}% ({c['fixed']}/{c['initially_wrong_judged']})"
        in out
    )
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "snapshots", "show", snap["id"]],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "quality: accuracy" in out


def test_quality_cache_is_exact_once_a_job_settles(sessionmaker_) -> None:  # type: ignore[no-untyped-def]
    """While items are in flight a cached entry may be reused for max_age_s (one poll) unless
    it counted no verified item; once every item is terminal the status fingerprint changes
    and the numbers are recomputed."""
    from cgd.jobs.ops import job_statuses
    from cgd.jobs.quality import CACHE

    with session_scope(sessionmaker_) as s:
        team = Team(name=f"qc-{uuid.uuid4().hex[:8]}")
        s.add(team)
        s.flush()
        ds = Dataset(team_id=team.id, name="q", format="jsonl", content_hash="x", num_items=4)
        s.add(ds)
        s.flush()
        job = Job(
            team_id=team.id,
            dataset_id=ds.id,
            spec={
                "dataset_id": str(ds.id),
                "student": None,
                "teacher": {"base_url": "http://t/v1", "model": "t"},
            },
            template_version="t",
            total_items=4,
            num_chunks=1,
        )
        s.add(job)
        s.flush()
        items = [JobItem(job_id=job.id, idx=i, sample=0, state="pending") for i in range(4)]
        s.add_all(items)
        s.flush()
        assert job_statuses(s, [job])[0].quality.counts["verified"] == 0
        items[0].state, items[0].initial_correct = "verified", True
        s.flush()
        # An entry that counted nothing verified is never reused: numbers show at once.
        q1 = job_statuses(s, [job])[0].quality
        assert q1.counts["verified"] == 1 and q1.initial_accuracy == 1.0
        items[1].state, items[1].initial_correct = "verified", False
        s.flush()
        # In flight and younger than max_age_s (one poll): the cached numbers may lag.
        assert job_statuses(s, [job])[0].quality.counts["verified"] == 1
        for it in items:
            it.state, it.initial_correct, it.refined_correct = "verified", False, True
        s.flush()
        q = job_statuses(s, [job])[0].quality  # settled: recomputed, exact
        assert q.counts["verified"] == 4 and q.fix_rate == 1.0
        assert CACHE.get(s, {job.id: (None, False)})[job.id].counts["verified"] == 4
        s.rollback()
