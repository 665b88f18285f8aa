"""Job status under many pollers: while one request recomputes an expired status, the others
are answered from the entry it replaces instead of queueing behind the aggregate.

The API runs in this process (on this run's Postgres) so the test can hold the recompute at a
known point: the real ``job_status`` runs, behind a gate.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cgd.db.models import Team
from cgd.jobs import ops
from cgd.jobs.schemas import JobSpec
from cgd.settings import Settings
from services.api import main
from tests.conftest import WORKER_ENV, make_key

pytestmark = pytest.mark.timeout(60)


def _job(sessionmaker_: Any, team: str, ds: str) -> uuid.UUID:
    """A queued job made directly (no run tokens sent, no endpoint contacted)."""
    with sessionmaker_() as s:
        team_id = s.scalar(select(Team.id).where(Team.name == team))
        endpoint = {"base_url": "http://127.0.0.1:9/v1", "model": "m"}
        spec = JobSpec.model_validate(
            {"dataset_id": ds, "student": endpoint, "teacher": endpoint, "preflight": False}
        )
        created, _tokens = ops.create(s, team_id, spec, None)
        s.commit()
    return created.id


def test_pollers_get_the_previous_status_while_one_recomputes(
    database_url: str, broker_url: str, sessionmaker_: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    gate = threading.Event()
    gate.set()
    computed = []
    real = ops.job_status

    def gated(session: Any, job: Any) -> Any:
        gate.wait(30)
        computed.append(time.monotonic())
        return real(session, job)

    monkeypatch.setattr(ops, "job_status", gated)  # what the route calls
    settings = Settings(
        database_url=database_url,
        broker_url=broker_url,
        home=tmp_path,
        secret_key=WORKER_ENV["CGD_SECRET_KEY"],  # other tests' jobs hold sealed keys
    )
    app = main.create_app(settings)
    team = f"team-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {make_key(sessionmaker_, team)}"}
    other = {"Authorization": f"Bearer {make_key(sessionmaker_)}"}

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c,
        ):
            row = b'{"prompt": "What is 2 + 2?", "answer": "4"}\n'
            ds = (await c.post("/v1/datasets", files={"file": ("d.jsonl", row)})).json()["id"]
            job_id = await asyncio.to_thread(_job, sessionmaker_, team, ds)
            first = await c.get(f"/v1/jobs/{job_id}")
            assert first.status_code == 200 and len(computed) == 1
            await asyncio.sleep(0.6)  # the entry is no longer fresh
            gate.clear()
            leader = asyncio.create_task(c.get(f"/v1/jobs/{job_id}"))
            await asyncio.sleep(0.2)
            assert not leader.done()  # it waits for the recompute ...
            started = time.monotonic()
            follower = await c.get(f"/v1/jobs/{job_id}")  # ... this one does not
            assert follower.status_code == 200 and time.monotonic() - started < 1.0
            assert follower.json() == first.json()  # the previous entry
            # Another team never shares the entry, stale or not: its own lookup finds no such
            # job of its own (before any aggregate), so it gets a 404 at once.
            assert (await c.get(f"/v1/jobs/{job_id}", headers=other)).status_code == 404
            gate.set()
            assert (await leader).status_code == 200
            assert len(computed) == 2  # one recompute, however many pollers

    asyncio.run(run())
