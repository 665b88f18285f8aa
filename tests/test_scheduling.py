"""Many teams on one deployment (issue 11): fair dispatch, caps, preflight, circuit breaker,
quotas, lifecycle and the sweeper. Two teams, a real API and worker, Redis, Postgres and the
simulator over HTTP."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select

from cgd.client import CgdApiError, CgdClient
from cgd.db.models import (
    Job,
    JobChunk,
    JobItem,
    JobItemCount,
    Snapshot,
    Team,
    TrainingRun,
    utcnow,
)
from cgd.generation import dispatch
from cgd.jobs import ops as jobs_ops
from cgd.jobs.schemas import JobSpec
from tests import test_jobs
from tests.conftest import admin, free_port, make_key
from tests.test_jobs import create_job, job_body, upload_slice, wait_job

pytestmark = pytest.mark.integration
gsm8k_slice = test_jobs.gsm8k_slice  # the fixtures, shared
simulator = test_jobs.simulator


@pytest.fixture
def team(api_server, sessionmaker_) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """Makes clients of brand-new named teams: ``team()`` → (name, client)."""
    clients: list[httpx.Client] = []

    def make() -> tuple[str, httpx.Client]:
        name = f"team-{secrets.token_hex(6)}"
        key = make_key(sessionmaker_, name)
        c = httpx.Client(
            base_url=api_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        )
        clients.append(c)
        return name, c

    yield make
    for c in clients:
        c.close()


def set_sim(sim: Any, **patch: Any) -> None:
    r = httpx.post(f"{sim.url}/sim/config", json=patch)
    assert r.status_code == 200, r.text


# --- fair dispatch ---------------------------------------------------------------------------


@pytest.mark.slow
def test_backlog_of_one_team_does_not_delay_another(
    team, start_worker, simulator, gsm8k_slice
) -> None:  # type: ignore[no-untyped-def]
    """B queues 12 jobs (one chunk each) before A's job; with two worker slots A is served in the
    first round (round-robin across teams), not after B's backlog; B's high-priority job, queued
    last, runs first among B's."""
    sim = simulator("--slots", "64", "--latency", "0.3")
    _, a = team()
    _, b = team()
    ds_b = upload_slice(b, gsm8k_slice, 10)
    b_jobs = [create_job(b, job_body(ds_b, sim, chunk_size=10)) for _ in range(11)]
    b_high = create_job(b, job_body(ds_b, sim, chunk_size=10, priority="high"))
    ds_a = upload_slice(a, gsm8k_slice, 10)
    a_job = create_job(a, job_body(ds_a, sim, chunk_size=10))
    start_worker(CGD_WORKER_CONCURRENCY="2")
    wait_job(a, a_job, timeout_s=60)
    b_done = [j for j in b_jobs if b.get(f"/v1/jobs/{j}").json()["status"] == "completed"]
    assert len(b_done) <= 3, f"A waited behind B's backlog: {len(b_done)} of B's jobs done first"
    high_started = wait_job(b, b_high, timeout_s=60)["started_at"]
    first_normal = min(wait_job(b, j, timeout_s=120)["started_at"] for j in b_jobs)
    assert high_started <= first_normal


@pytest.mark.slow
def test_team_cap_on_running_chunks(
    team, start_worker, simulator, gsm8k_slice, sessionmaker_
) -> None:  # type: ignore[no-untyped-def]
    """CGD_TEAM_MAX_RUNNING_CHUNKS=1: B never runs two chunks at once, although three slots are
    free; A's chunk runs beside B's."""
    sim = simulator("--slots", "64", "--latency", "0.2")
    _, a = team()
    _, b = team()
    ds_b = upload_slice(b, gsm8k_slice, 30)
    b_job = create_job(b, job_body(ds_b, sim, chunk_size=10))
    ds_a = upload_slice(a, gsm8k_slice, 30)
    a_job = create_job(a, job_body(ds_a, sim, chunk_size=10))
    start_worker(CGD_WORKER_CONCURRENCY="3", CGD_TEAM_MAX_RUNNING_CHUNKS="1")
    ids = {uuid.UUID(b_job): "b", uuid.UUID(a_job): "a"}
    peak = {"a": 0, "b": 0}
    both = False
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with sessionmaker_() as s:
            rows = s.execute(
                select(JobChunk.job_id, func.count())
                .where(
                    JobChunk.job_id.in_(list(ids)),
                    JobChunk.status == "running",
                    JobChunk.lease_until > utcnow(),
                )
                .group_by(JobChunk.job_id)
            ).all()
        now = {ids[j]: n for j, n in rows}
        for k, n in now.items():
            peak[k] = max(peak[k], n)
        both = both or (now.get("a", 0) and now.get("b", 0)) > 0
        if all(
            c.get(f"/v1/jobs/{j}").json()["status"] == "completed"
            for c, j in ((a, a_job), (b, b_job))
        ):
            break
        time.sleep(0.05)
    assert peak == {"a": 1, "b": 1}, peak
    assert both


def _queued_job(a: httpx.Client, name: str, sim: Any, gsm8k: Any, sm: Any) -> uuid.UUID:
    """A two-chunk job created without sending its run tokens: no worker can claim it."""
    ds = upload_slice(a, gsm8k, 20)
    with sm() as s:
        team_id = s.scalar(select(Team.id).where(Team.name == name))
        spec = JobSpec.model_validate(job_body(ds, sim, chunk_size=10))
        created, _tokens = jobs_ops.create(s, team_id, spec, None)
        s.commit()
    return created.id


def _claim_while_another_holds(sm: Any, cap: int) -> tuple[Any, Any, bool]:
    """Claim A stays uncommitted while claim B starts; returns (A's, B's, B waited for A)."""
    first = sm()
    held = dispatch.claim_next(first, "slot-a", 60, cap)
    result: dict[str, Any] = {}

    def second() -> None:
        with sm() as s:
            result["claim"] = dispatch.claim_next(s, "slot-b", 60, cap)
            s.commit()

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(0.5)
    waited = thread.is_alive()
    first.commit()
    first.close()
    thread.join(10)
    return held, result["claim"], waited


def test_claims_for_one_team_at_once_each_get_a_chunk(
    team, simulator, gsm8k_slice, sessionmaker_, no_leftovers
) -> None:  # type: ignore[no-untyped-def]
    """Several worker slots asking at once for one team's work take turns on the team's row:
    each gets its own chunk (none goes idle while chunks are left), and the team's cap still
    holds under the lock."""
    sim = simulator("--slots", "8", "--latency", "0.1")
    name, a = team()
    job_id = _queued_job(a, name, sim, gsm8k_slice, sessionmaker_)
    held, claimed, waited = _claim_while_another_holds(sessionmaker_, cap=8)
    assert waited  # B waited for A's claim to commit ...
    assert held == (job_id, 0) and claimed == (job_id, 1)  # ... and then took the next chunk

    name, b = team()
    job_id = _queued_job(b, name, sim, gsm8k_slice, sessionmaker_)
    held, claimed, waited = _claim_while_another_holds(sessionmaker_, cap=1)
    assert held == (job_id, 0) and waited
    assert claimed is None  # the team's one running chunk is its cap: B saw A's claim


def test_a_claim_that_waited_for_a_team_reconsiders_the_order(
    team, simulator, gsm8k_slice, sessionmaker_, no_leftovers
) -> None:  # type: ignore[no-untyped-def]
    """Two slots ask at once while two teams have queued work: both first pick the same team
    (fewest running, tie); the one that waited for the team's lock sees the other's claim and
    serves the other team, so one round gives each team a slot (not one team both)."""
    sim = simulator("--slots", "8", "--latency", "0.1")
    name_c, c = team()
    name_d, d = team()
    jobs = {
        _queued_job(c, name_c, sim, gsm8k_slice, sessionmaker_),
        _queued_job(d, name_d, sim, gsm8k_slice, sessionmaker_),
    }
    held, claimed, waited = _claim_while_another_holds(sessionmaker_, cap=8)
    assert waited
    assert {held[0], claimed[0]} == jobs, (held, claimed)


# --- preflight -------------------------------------------------------------------------------


def test_preflight_names_url_answer_models_and_hint(team, simulator) -> None:  # type: ignore[no-untyped-def]
    sim = simulator("--served-model", "teacher-7b", "--served-model", "student-1b")
    _, a = team()
    r = a.post("/v1/datasets", files={"file": ("d.jsonl", b'{"prompt": "1+1?", "answer": "2"}\n')})
    ds = r.json()["id"]
    good = {
        "student": {"base_url": sim.base_url, "model": "student-1b"},
        "teacher": {"base_url": sim.base_url, "model": "teacher-7b"},
    }
    # No /v1 in the base URL.
    body = {"dataset_id": ds, **good, "teacher": {"base_url": sim.url, "model": "teacher-7b"}}
    r = a.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    d = r.json()["detail"]
    assert d["field"] == "teacher.base_url" and d["url"] == f"{sim.url}/models"
    assert d["answered"].startswith("HTTP 404") and d["hint"] == f"did you mean {sim.url}/v1?"
    # Nothing listening.
    dead = f"http://127.0.0.1:{free_port()}/v1"
    r = a.post("/v1/jobs", json={**body, "teacher": {"base_url": dead, "model": "t"}})
    assert r.status_code == 422 and dead in r.json()["detail"]["url"]
    assert "no answer" in r.json()["detail"]["answered"]
    # A model the server does not serve: the answer lists those it does.
    r = a.post(
        "/v1/jobs",
        json={
            "dataset_id": ds,
            **good,
            "student": {"base_url": sim.base_url, "model": "student-2b"},
        },
    )
    assert r.status_code == 422
    d = r.json()["detail"]
    assert d["field"] == "student.model" and sorted(d["models"]) == ["student-1b", "teacher-7b"]
    # Nothing was created by the refused requests; a good spec, or preflight off, is accepted.
    assert a.get("/v1/jobs").json()["data"] == []
    assert a.post("/v1/jobs", json={"dataset_id": ds, **good}).status_code == 202
    off = {**body, "teacher": {"base_url": dead, "model": "t"}, "preflight": False}
    assert a.post("/v1/jobs", json=off).status_code == 202


# --- circuit breaker -------------------------------------------------------------------------


BREAKER_ENV = {
    "CGD_LLM_TIMEOUT_S": "1",
    "CGD_LLM_MAX_ATTEMPTS": "5",
    "CGD_PREFLIGHT_TIMEOUT_S": "1",
    "CGD_BREAKER_PROBE_INTERVAL_S": "2",
}


@pytest.mark.slow
def test_hanging_endpoint_pauses_its_jobs_and_leaves_others_alone(
    team, start_worker, simulator, gsm8k_slice
) -> None:  # type: ignore[no-untyped-def]
    """B's four one-item jobs point at a hanging teacher; with four slots they would all be
    held. They pause (endpoint, last error, time) without failing their items, A's job completes
    meanwhile, and B's resume by themselves once the endpoint answers."""
    bad = simulator("--latency", "0.05", "--rate-hang", "1.0", "--hang-s", "60")
    good = simulator("--latency", "0.05")
    _, a = team()
    _, b = team()
    ds_b = upload_slice(b, gsm8k_slice, 1)
    b_jobs = [create_job(b, job_body(ds_b, bad)) for _ in range(4)]
    start_worker(CGD_WORKER_CONCURRENCY="4", **BREAKER_ENV)
    started = time.monotonic()
    paused = [wait_job(b, j, timeout_s=30, until=lambda s: s["status"] == "paused") for j in b_jobs]
    assert time.monotonic() - started < 15  # about two timeouts and a probe, not 5 × 1 s each
    for s in paused:
        assert s["paused"]["endpoint"] == bad.base_url
        assert s["paused"]["error"].startswith("timeout") and s["paused"]["at"]
        assert s["counts"]["failed"] == 0 and s["errors"] == {}
    ds_a = upload_slice(a, gsm8k_slice, 20)
    a_job = create_job(a, job_body(ds_a, good))
    assert wait_job(a, a_job, timeout_s=30)["status"] == "completed"
    set_sim(bad, rate_hang=0.0)
    for j in b_jobs:
        s = wait_job(b, j, timeout_s=60)
        assert s["status"] == "completed" and s["counts"]["completed"] == 1


@pytest.mark.slow
def test_resume_by_hand(team, start_worker, simulator, gsm8k_slice, sessionmaker_) -> None:  # type: ignore[no-untyped-def]
    sim = simulator("--latency", "0.02", "--rate-500", "1.0")
    _, a = team()
    ds = upload_slice(a, gsm8k_slice, 20)
    job = create_job(a, job_body(ds, sim))
    r = a.post(f"/v1/jobs/{job}/resume")
    assert r.status_code == 409 and r.json()["error"] == "JobNotPaused"
    start_worker(**{**BREAKER_ENV, "CGD_BREAKER_PROBE_INTERVAL_S": "3600"})
    s = wait_job(a, job, timeout_s=30, until=lambda s: s["status"] == "paused")
    assert "server_error" in s["paused"]["error"] and s["counts"]["failed"] < 20
    set_sim(sim, rate_500=0.0)
    time.sleep(2)
    assert a.get(f"/v1/jobs/{job}").json()["status"] == "paused"  # no probe: stays paused
    r = a.post(f"/v1/jobs/{job}/resume")
    assert r.status_code == 202 and r.json()["status"] in ("running", "queued")
    a.post(f"/v1/jobs/{job}/retry-failed")
    s = wait_job(a, job, timeout_s=60)
    assert s["status"] == "completed" and s["counts"]["completed"] == 20
    # The maintained counts (trigger) equal a fresh aggregate of the items, after items went
    # pending → … → failed → pending (retry) → … → verified.
    assert_counts_match(sessionmaker_, job)


def assert_counts_match(sessionmaker_, job: str) -> None:  # type: ignore[no-untyped-def]
    jid = uuid.UUID(job)
    with sessionmaker_() as s:
        fresh = s.execute(
            select(JobItem.state, func.count(), func.sum(JobItem.prompt_tokens))
            .where(JobItem.job_id == jid)
            .group_by(JobItem.state)
        ).all()
        kept = s.execute(
            select(
                JobItemCount.state, func.sum(JobItemCount.n), func.sum(JobItemCount.prompt_tokens)
            )
            .where(JobItemCount.job_id == jid)
            .group_by(JobItemCount.state)
            .having(func.sum(JobItemCount.n) > 0)
        ).all()
    assert sorted((st, int(n), int(t)) for st, n, t in fresh) == sorted(
        (st, int(n), int(t)) for st, n, t in kept
    )


# --- quotas ----------------------------------------------------------------------------------


def test_quotas_answer_429_naming_the_quota(team, api_server, simulator, gsm8k_slice) -> None:  # type: ignore[no-untyped-def]
    sim = simulator()
    name, a = team()
    _, b = team()
    ds = upload_slice(a, gsm8k_slice, 10)
    assert admin(api_server, "set-quota", "--team", name, "--queued-jobs", "1").returncode == 0
    create_job(a, job_body(ds, sim))  # no worker: it stays queued
    r = a.post("/v1/jobs", json=job_body(ds, sim))
    assert r.status_code == 429 and r.headers["Retry-After"].isdigit()
    assert (
        r.json()["detail"]["quota"] == "queued_jobs"
        and "queued_jobs" in r.json()["detail"]["reason"]
    )
    # Another team is not limited by A's quota.
    ds_b = upload_slice(b, gsm8k_slice, 10)
    create_job(b, job_body(ds_b, sim))
    create_job(b, job_body(ds_b, sim))
    p = admin(api_server, "set-quota", "--team", name, "--reset", "--stored-items", "15")
    assert p.returncode == 0, p.stderr
    r = a.post("/v1/jobs", json=job_body(ds, sim))
    assert r.status_code == 429 and r.json()["detail"]["quota"] == "stored_items"
    assert admin(api_server, "set-quota", "--team", name, "--reset").returncode == 0
    assert a.post("/v1/jobs", json=job_body(ds, sim)).status_code == 202
    # The Python client (and `cgd jobs resume|delete`) over the same endpoints.
    key = a.headers["Authorization"].split()[1]
    with CgdClient(api_server.url, key) as api:
        job = a.get("/v1/jobs").json()["data"][0]["id"]
        with pytest.raises(CgdApiError) as e:
            api.resume_job(job)
        assert e.value.status == 409 and e.value.kind == "JobNotPaused"
        api.delete_job(job)
        with pytest.raises(CgdApiError) as e:
            api.get_job(job)
        assert e.value.status == 404
    assert (
        admin(api_server, "set-quota", "--team", "no-such-team", "--queued-jobs", "1").returncode
        == 1
    )


# --- lifecycle -------------------------------------------------------------------------------


@pytest.mark.slow
def test_delete_job_keeps_snapshots_then_dataset_can_go(
    team, api_server, start_worker, simulator, gsm8k_slice
) -> None:  # type: ignore[no-untyped-def]
    sim = simulator("--latency", "0.01")
    _, a = team()
    _, b = team()
    ds = upload_slice(a, gsm8k_slice, 20)
    job = create_job(a, job_body(ds, sim))
    start_worker()
    wait_job(a, job)
    r = a.post("/v1/snapshots", json={"job_ids": [job], "filters": {"refined_correct": None}})
    assert r.status_code == 201, r.text
    snap = r.json()["id"]
    assert a.delete(f"/v1/datasets/{ds}").status_code == 409
    assert b.delete(f"/v1/jobs/{job}").status_code == 404  # another team's
    assert a.delete(f"/v1/jobs/{job}").status_code == 204
    assert a.get(f"/v1/jobs/{job}").status_code == 404
    rows = a.get(f"/v1/snapshots/{snap}/export", params={"format": "jsonl"}).text.splitlines()
    assert len(rows) == 20 and all(json.loads(x)["critique"] for x in rows)
    assert a.delete(f"/v1/datasets/{ds}").status_code == 204
    # gc: a cancelled job older than the retention goes; its dataset too once unused.
    ds2 = upload_slice(a, gsm8k_slice, 5)
    job2 = create_job(a, job_body(ds2, sim))
    a.post(f"/v1/jobs/{job2}/cancel")
    time.sleep(1)
    p = admin(api_server, "gc", "--job-days", "0.000005", "--dataset-days", "0.000005")
    assert p.returncode == 0 and "deleted" in p.stdout, p.stderr
    assert a.get(f"/v1/jobs/{job2}").status_code == 404
    assert a.get(f"/v1/datasets/{ds2}").status_code == 404


# --- the sweeper -----------------------------------------------------------------------------


def _queue(url: str, name: str) -> list[dict[str, Any]]:
    return [json.loads(m) for m in redis.Redis.from_url(url).lrange(name, 0, -1)]


@pytest.mark.slow
def test_sweeper_resends_lost_train_messages_but_not_waiting_ones(
    team, api_server, start_worker, simulator, gsm8k_slice, sessionmaker_, no_leftovers
) -> None:  # type: ignore[no-untyped-def]
    """A worker that consumes only `curation` runs the sweeper: the run tokens of a queued job
    wait in `generation` and are not sent again; a training run whose message was lost gets a
    new one (with a new token), once."""
    url = api_server.env["CGD_BROKER_URL"]
    sim = simulator()
    _, a = team()
    ds = upload_slice(a, gsm8k_slice, 30)
    job = create_job(a, job_body(ds, sim, chunk_size=10))  # 3 chunks → 3 tokens
    assert len(_queue(url, "generation")) == 3
    # Item rows are written when a chunk first runs; until then the status counts them pending.
    with sessionmaker_() as s:
        assert s.scalar(select(func.count()).where(JobItem.job_id == uuid.UUID(job))) == 0
    st = a.get(f"/v1/jobs/{job}").json()
    assert st["status"] == "queued" and st["by_stage"]["pending"] == st["counts"]["pending"] == 30
    with sessionmaker_() as s, s.begin():
        team_id = s.scalar(select(Job.team_id).order_by(Job.created_at.desc()).limit(1))
        snap = Snapshot(team_id=team_id, status="ready", job_ids=[], spec={})
        s.add(snap)
        s.flush()
        run = TrainingRun(
            team_id=team_id,
            snapshot_id=snap.id,
            spec={},
            status="queued",
            token_hash="0" * 64,
            enqueued_at=utcnow() - timedelta(hours=1),  # its message never reached Redis
        )
        s.add(run)
        s.flush()
        run_id = str(run.id)
    start_worker(args=("--queues", "curation"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not _queue(url, "train"):
        time.sleep(0.5)
    train = _queue(url, "train")
    assert len(train) == 1
    body = json.loads(base64.b64decode(train[0]["body"]))
    assert body[0][0] == run_id
    with sessionmaker_() as s:
        assert s.get(TrainingRun, uuid.UUID(run_id)).token_hash != "0" * 64
    time.sleep(7)  # past CGD_REQUEUE_AFTER_S=5 with both messages still waiting
    assert len(_queue(url, "train")) == 1
    assert len(_queue(url, "generation")) == 3
