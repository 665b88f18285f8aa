"""The typed client (cgd.client.Client and AsyncClient) against a real API process, a real Celery
worker and the simulated LLM server: every resource group's get, list (iterated across pages,
one item per page) and errors, each error status as its own exception class."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cgd.client import (
    AsyncClient,
    AsyncPage,
    CgdApiError,
    Client,
    Conflict,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    SyncPage,
    Unauthorized,
    ValidationFailed,
)
from cgd.datasets.schemas import DatasetOut, ItemOut
from cgd.experiments.schemas import ExperimentOut
from cgd.jobs.schemas import JobCreated, JobRetried, JobStatusOut, TripletOut
from cgd.runs.schemas import EventOut, RunCreated, RunOut
from cgd.simulator import SimulatorProcess
from cgd.snapshots.schemas import CardOut, SnapshotDetail, SnapshotOut
from cgd.templates.schemas import TemplateOut
from tests.conftest import admin, data_file, make_key
from tests.test_client_cli import TRAINER_EVENTS, give_run_token, post_events

pytestmark = pytest.mark.integration

N = 12


@pytest.fixture(scope="module")
def gsm8k_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "gsm8k_small.jsonl"
    with open(data_file("gsm8k_train.jsonl")) as src:
        path.write_text("".join(next(src) for _ in range(N)))
    return path


@pytest.fixture
def sim(gsm8k_small: Path) -> Iterator[SimulatorProcess]:
    with SimulatorProcess(
        ["--port", "0", "--dataset", str(gsm8k_small), "--slots", "16", "--latency", "0.01"]
    ) as s:
        yield s


@pytest.fixture
def team(sessionmaker_) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    name = f"typed-{uuid.uuid4().hex[:10]}"
    return name, make_key(sessionmaker_, name)


def job_spec(dataset_id: Any, sim: SimulatorProcess) -> dict[str, Any]:
    endpoint = {"base_url": sim.base_url, "temperature": 0.0}
    return {
        "dataset_id": str(dataset_id),
        "student": {**endpoint, "model": "student"},
        "teacher": {**endpoint, "model": "teacher"},
        "chunk_size": 6,
    }


def missing() -> str:
    return str(uuid.uuid4())


def test_sync_client_every_resource_group(  # type: ignore[no-untyped-def]
    api_server, sessionmaker_, start_worker, sim, gsm8k_small, team, tmp_path
) -> None:
    start_worker()
    team_name, key = team
    with Client(api_server.url, key, max_retries=1, backoff_s=0.01) as client:
        # Datasets.
        ds = client.datasets.create(gsm8k_small, name="small")
        other = client.datasets.create(gsm8k_small, name="other")
        assert isinstance(ds, DatasetOut) and ds.num_items == N
        assert client.datasets.get(str(ds.id)).name == "small"
        page = client.datasets.list(limit=1)
        assert isinstance(page, SyncPage) and len(page.data) == 1 and page.next_cursor
        assert {d.id for d in page} == {ds.id, other.id}  # both pages
        items = list(client.datasets.items(str(ds.id), limit=5))
        assert all(isinstance(i, ItemOut) for i in items)
        assert [i.idx for i in items] == list(range(N))
        client.datasets.delete(str(other.id))
        with pytest.raises(NotFound) as nf:
            client.datasets.get(str(other.id))
        assert (nf.value.status, nf.value.kind) == (404, "DatasetNotFound")

        # Jobs.
        job = client.jobs.create(job_spec(ds.id, sim))
        assert isinstance(job, JobCreated) and job.total_items == N
        seen: list[str] = []
        status = client.jobs.wait(
            str(job.id), poll_s=0.2, timeout_s=90, on_status=lambda s: seen.append(s.status)
        )
        assert isinstance(status, JobStatusOut) and status.status == "completed"
        assert status.counts.completed == N and seen[-1] == "completed"
        second = client.jobs.create({**job_spec(ds.id, sim), "samples_per_prompt": 1})
        client.jobs.wait(str(second.id), poll_s=0.2, timeout_s=90)
        jobs_page = client.jobs.list(limit=1)
        assert len(jobs_page.data) == 1 and jobs_page.has_next_page()
        assert [j.id for j in jobs_page] == [second.id, job.id]
        triplets = list(client.jobs.triplets(str(job.id), limit=5))
        assert len(triplets) == N and all(isinstance(t, TripletOut) for t in triplets)
        right = list(client.jobs.triplets(str(job.id), refined_correct=True, limit=5))
        assert len(right) == sum(1 for t in triplets if t.refined_correct)
        assert isinstance(client.jobs.retry_failed(str(job.id)), JobRetried)
        with pytest.raises(Conflict) as conflict:  # only a paused job resumes
            client.jobs.resume(str(job.id))
        assert conflict.value.status == 409
        with pytest.raises(NotFound):
            client.jobs.get(missing())
        with pytest.raises(ValidationFailed) as invalid:
            client.jobs.create({**job_spec(ds.id, sim), "dataset_id": "not-a-uuid"})
        assert invalid.value.status == 422 and invalid.value.field == "body.dataset_id"
        assert invalid.value.errors[0]["field"] == "body.dataset_id"

        # Snapshots.
        snap = client.snapshots.create(job_ids=[str(job.id)], name="s1")
        snap2 = client.snapshots.create(job_ids=[str(second.id)], name="s2")
        assert isinstance(snap, SnapshotOut) and snap.status == "ready"
        detail = client.snapshots.get(str(snap.id))
        assert isinstance(detail, SnapshotDetail) and detail.content_hash == snap.content_hash
        assert [s.id for s in client.snapshots.list(limit=1)] == [snap2.id, snap.id]
        assert isinstance(client.snapshots.card(str(snap.id)), CardOut)
        res = client.snapshots.export(str(snap.id), tmp_path / "s.jsonl", layout="messages")
        assert res["content_hash"] == snap.content_hash
        lines = (tmp_path / "s.jsonl").read_text().splitlines()
        assert len(lines) == snap.num_items and "messages" in json.loads(lines[0])
        with pytest.raises(NotFound):
            client.snapshots.get(missing())

        # Training runs.
        run_spec = {"snapshot_id": str(snap.id), "base_model": "tiny", "eval": {"sets": []}}
        run = client.runs.create(run_spec)
        run2 = client.runs.create(run_spec)
        assert isinstance(run, RunCreated) and run.status == "queued"
        assert isinstance(client.runs.get(str(run.id)), RunOut)
        assert {r.id for r in client.runs.list(limit=1)} >= {run.id, run2.id}
        token = give_run_token(sessionmaker_, str(run.id))
        post_events(api_server.url, str(run.id), token, TRAINER_EVENTS)
        events = list(client.runs.events(str(run.id), limit=2))
        assert all(isinstance(e, EventOut) for e in events)
        assert [e.type for e in events][-len(TRAINER_EVENTS) :] == [t for t, _ in TRAINER_EVENTS]
        assert client.runs.cancel(str(run2.id)).status in ("cancelled", "cancelling")
        with pytest.raises(ValidationFailed) as bad_model:
            client.runs.create({**run_spec, "base_model": "no-such-model"})
        assert bad_model.value.field is not None and "base_model" in bad_model.value.field
        with pytest.raises(NotFound):
            client.runs.get(missing())

        # Templates.
        t1 = client.templates.create("alpha", description="first")
        client.templates.create("beta")
        assert isinstance(t1, TemplateOut) and t1.version == 1
        assert client.templates.update("alpha", description="second").version == 2
        assert client.templates.get("alpha", version=1).description == "first"
        assert client.templates.get("alpha").version == 2
        names = [t.name for t in client.templates.list(limit=1)]  # the built-in ones too
        assert names == [t.name for t in client.templates.list(limit=100).data]
        assert {"alpha", "beta"} <= set(names) and len(names) > 2
        with pytest.raises(Conflict):
            client.templates.create("alpha")
        with pytest.raises(NotFound):
            client.templates.get("gamma")
        with pytest.raises(PayloadTooLarge) as too_large:
            client.templates.create("huge", description="x" * (2 * 1024**2))
        assert too_large.value.status == 413

        # Experiments.
        exp_spec = {"snapshot_id": str(snap.id), "base_model": "tiny", "modes": ["cgd"]}
        exp = client.experiments.create({**exp_spec, "eval": {"sets": []}})
        exp2 = client.experiments.create({**exp_spec, "eval": {"sets": []}, "seeds": [1]})
        assert isinstance(exp, ExperimentOut) and len(exp.runs) == 1
        assert client.experiments.get(str(exp.id)).id == exp.id
        assert [e.id for e in client.experiments.list(limit=1)] == [exp2.id, exp.id]
        assert isinstance(client.experiments.cancel(str(exp2.id)), ExperimentOut)
        with pytest.raises(NotFound):
            client.experiments.get(missing())

        # 429 over a quota, with the wait the server asks for.
        out = admin(api_server, "set-quota", "--team", team_name, "--queued-jobs", "0")
        assert out.returncode == 0, out.stderr
        with pytest.raises(RateLimited) as limited:
            client.jobs.create(job_spec(ds.id, sim))
        assert limited.value.status == 429 and limited.value.retry_after == 60

    with Client(api_server.url, "cgd_not_a_key", max_retries=0) as anon:
        with pytest.raises(Unauthorized) as denied:
            anon.jobs.list()
        assert isinstance(denied.value, CgdApiError) and denied.value.status == 401


def test_async_client_every_resource_group(  # type: ignore[no-untyped-def]
    api_server, sessionmaker_, start_worker, sim, gsm8k_small, team, tmp_path
) -> None:
    start_worker()
    _, key = team

    async def walk() -> None:
        async with AsyncClient(api_server.url, key, max_retries=1, backoff_s=0.01) as client:
            ds = await client.datasets.create(gsm8k_small, name="a")
            other = await client.datasets.create(gsm8k_small, name="b")
            assert isinstance(ds, DatasetOut)
            assert (await client.datasets.get(str(ds.id))).name == "a"
            page = await client.datasets.list(limit=1)
            assert isinstance(page, AsyncPage) and len(page.data) == 1
            assert {d.id async for d in page} == {ds.id, other.id}
            idx = [i.idx async for i in await client.datasets.items(str(ds.id), limit=5)]
            assert idx == list(range(N))
            await client.datasets.delete(str(other.id))
            with pytest.raises(NotFound):
                await client.datasets.get(str(other.id))

            job = await client.jobs.create(job_spec(ds.id, sim))
            second = await client.jobs.create(job_spec(ds.id, sim))
            done = await client.jobs.wait(str(job.id), poll_s=0.2, timeout_s=90)
            await client.jobs.wait(str(second.id), poll_s=0.2, timeout_s=90)
            assert isinstance(done, JobStatusOut) and done.status == "completed"
            assert [j.id async for j in await client.jobs.list(limit=1)] == [second.id, job.id]
            triplets = [t async for t in await client.jobs.triplets(str(job.id), limit=5)]
            assert len(triplets) == N and isinstance(triplets[0], TripletOut)
            with pytest.raises(Conflict):
                await client.jobs.resume(str(job.id))

            snap = await client.snapshots.create(job_ids=[str(job.id)], name="s1")
            snap2 = await client.snapshots.create(job_ids=[str(second.id)], name="s2")
            assert isinstance(await client.snapshots.get(str(snap.id)), SnapshotDetail)
            snaps = [s.id async for s in await client.snapshots.list(limit=1)]
            assert snaps == [snap2.id, snap.id]
            res = await client.snapshots.export(str(snap.id), tmp_path / "a.jsonl")
            assert res["content_hash"] == snap.content_hash
            with pytest.raises(NotFound):
                await client.snapshots.get(missing())

            spec = {"snapshot_id": str(snap.id), "base_model": "tiny", "eval": {"sets": []}}
            run = await client.runs.create(spec)
            run2 = await client.runs.create(spec)
            assert isinstance(await client.runs.get(str(run.id)), RunOut)
            assert {r.id async for r in await client.runs.list(limit=1)} >= {run.id, run2.id}
            token = give_run_token(sessionmaker_, str(run.id))
            post_events(api_server.url, str(run.id), token, TRAINER_EVENTS)
            types = [e.type async for e in await client.runs.events(str(run.id), limit=2)]
            assert types[-len(TRAINER_EVENTS) :] == [t for t, _ in TRAINER_EVENTS]
            with pytest.raises(ValidationFailed):
                await client.runs.create({**spec, "base_model": "no-such-model"})

            await client.templates.create("alpha")
            await client.templates.create("beta")
            assert (await client.templates.update("alpha", description="v2")).version == 2
            names = [t.name async for t in await client.templates.list(limit=1)]
            assert names == [t.name for t in (await client.templates.list(limit=100)).data]
            assert {"alpha", "beta"} <= set(names)
            with pytest.raises(Conflict):
                await client.templates.create("beta")

            exp_spec = {"snapshot_id": str(snap.id), "base_model": "tiny", "modes": ["cgd"]}
            exp = await client.experiments.create({**exp_spec, "eval": {"sets": []}})
            exp2 = await client.experiments.create({**exp_spec, "eval": {"sets": []}, "seeds": [1]})
            assert (await client.experiments.get(str(exp.id))).id == exp.id
            ids = [e.id async for e in await client.experiments.list(limit=1)]
            assert ids == [exp2.id, exp.id]
            with pytest.raises(NotFound):
                await client.experiments.get(missing())

        async with AsyncClient(api_server.url, "cgd_not_a_key", max_retries=0) as anon:
            with pytest.raises(Unauthorized):
                await anon.templates.list()

    asyncio.run(walk())


def test_async_retries_only_where_repeating_is_safe() -> None:
    """The asyncio transport keeps the blocking one's rules (tests/test_client_cli.py): an
    ``Idempotency-Key`` made once per call and reused by its retries, no blind POST retries,
    no 4xx retries."""
    import httpx

    from cgd.client import CgdConnectionError, ServerError

    calls: list[tuple[str, str | None]] = []
    script: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.headers.get("idempotency-key")))
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        status, headers = step if isinstance(step, tuple) else (step, {})
        job = {"id": str(uuid.uuid4()), "status": "queued", "total_items": 1}
        return httpx.Response(status, json=job if status < 400 else {"error": "E"}, headers=headers)

    async def walk() -> None:
        transport = httpx.MockTransport(handler)
        async with AsyncClient("http://api", "k", transport=transport, backoff_s=0.001) as c:
            script[:] = [httpx.ReadError("reset"), 503, 202]
            assert isinstance(await c.jobs.create({"dataset_id": "x"}), JobCreated)
            assert len(calls) == 3 and calls[0][1] and len({k for _, k in calls}) == 1
            calls.clear()
            script[:] = [httpx.ReadError("reset")]  # a POST without a key: maybe done once
            with pytest.raises(CgdConnectionError):
                await c.snapshots.create(job_ids=["j"])
            assert len(calls) == 1
            calls.clear()
            script[:] = [(429, {"Retry-After": "7"})]
            with pytest.raises(RateLimited) as limited:
                await c.jobs.get("x")
            assert limited.value.retry_after == 7 and len(calls) == 1
            script[:] = [500]
            with pytest.raises(ServerError):
                await c.jobs.get("x")

    asyncio.run(walk())


def test_client_imports_no_server_framework() -> None:
    """The client and the request/response schemas it returns import pydantic and httpx, not
    the database layer, the worker's HTTP stack or a server framework."""
    import subprocess
    import sys

    heavy = ("fastapi", "celery", "uvicorn", "torch", "sqlalchemy", "aiohttp")
    probe = f"import sys, cgd.client; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
