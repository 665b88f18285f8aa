"""Batch mode (OpenAI Batch API) end to end: real API, worker, Postgres and simulator."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from cgd.db.models import Generation
from tests import test_jobs
from tests.test_jobs import (
    create_job,
    db_counts,
    job_body,
    sim_stats,
    triplets,
    upload_slice,
    wait_job,
)

# The job tests' fixtures, shared (pytest finds fixtures by module attribute).
gsm8k_slice = test_jobs.gsm8k_slice
simulator = test_jobs.simulator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _stages(status: dict, stage: str) -> list[dict]:  # type: ignore[type-arg]
    return [b for b in status["batches"] if b["stage"] == stage]


@pytest.mark.slow
def test_batch_job_survives_worker_sigkill_without_resubmitting(  # type: ignore[no-untyped-def]
    client, start_worker, simulator, gsm8k_slice, sessionmaker_
) -> None:
    """The teacher in batch mode (the student online): the worker is SIGKILLed while both
    chunks' critique batches run; its successor resumes polling them (batch ids persisted),
    submits nothing twice, and every item completes. Reasoning is stored apart from answers."""
    n = 60
    sim = simulator("--slots", "32", "--latency", "0.05", "--batch-delay", "4", "--reasoning")
    worker = start_worker(CGD_BATCH_POLL_S="0.2")
    ds = upload_slice(client, gsm8k_slice, n)
    body = job_body(ds, sim, chunk_size=30)
    body["teacher"]["mode"] = "batch"
    job_id = create_job(client, body)
    mid = wait_job(client, job_id, until=lambda s: len(_stages(s, "critique")) == 2)
    worker.kill()
    assert all(b["status"] == "in_progress" and b["requests"] == 30 for b in mid["batches"])
    assert mid["status"] == "running"

    start_worker(CGD_BATCH_POLL_S="0.2")
    status = wait_job(client, job_id, timeout_s=180)
    assert status["status"] == "completed", status
    assert status["counts"] == {"total": n, "completed": n, "failed": 0, "pending": 0}
    done = sorted((b["chunk"], b["stage"], b["status"]) for b in status["batches"])
    assert done == [(c, st, "stored") for c in (0, 1) for st in ("critique", "refine")]
    stats = sim_stats(sim)
    assert stats["faults"]["batches_created"] == 4  # one per chunk and stage: none resubmitted
    assert stats["by_stage_model"]["critique"]["teacher"] == n  # each batched request ran once
    counts = db_counts(sessionmaker_, job_id)
    assert (counts["gen_probe"], counts["gen_critique"], counts["gen_refine"]) == (n, n, n)
    # Batched calls are counted by stage and outcome like online ones, in the same transaction
    # as their items (so the outcomes add up to the totals even across the SIGKILL).
    by_stage = status["tokens"]["by_stage"]
    assert by_stage["critique"]["kept"]["completion"] > 0 and by_stage["refine"]["kept"]
    for kind in ("prompt", "completion"):
        counted = sum(t[kind] for st in by_stage.values() for t in st.values())
        assert counted == status["tokens"][kind], (kind, status["tokens"])

    with sessionmaker_() as s:
        gens = s.scalars(select(Generation).where(Generation.job_id == uuid.UUID(job_id))).all()
    assert all(g.reasoning and g.reasoning.startswith("Thinking") for g in gens)
    assert not any("Thinking" in g.text for g in gens)  # the answer never carries it
    refined = triplets(client, job_id, status="verified")
    assert len(refined) == n and not any("Thinking" in str(t) for t in refined)
