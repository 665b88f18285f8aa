"""Paused jobs (the circuit breaker's side in the database): resume by hand or after a probe."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cgd.db.models import Job, utcnow
from cgd.generation.breaker import probe_shapes
from cgd.generation.spec import JobSpec
from cgd.llm_client import EndpointConfig, safe_url
from cgd.templates.ops import template_for_job


@dataclass
class PausedJob:
    job_id: uuid.UUID
    team_id: uuid.UUID
    # The job's endpoint(s) that failed, each with the prompt shape its probe sends (the job's
    # own template: a probe must look like the calls that failed, model and roles alike).
    endpoints: list[tuple[EndpointConfig, list[dict[str, str]]]]


def resume(session: Session, job: Job) -> bool:
    """Clear the pause; False when the job was not paused."""
    if job.paused_at is None:
        return False
    job.paused_at = job.pause_endpoint = job.pause_error = job.pause_probed_at = None
    session.flush()
    return True


def due_for_probe(session: Session, interval_s: float, limit: int = 20) -> list[PausedJob]:
    """Paused jobs whose endpoint was last probed over ``interval_s`` ago (marked probed now,
    so several sweepers never probe one job at once)."""
    now = utcnow()
    jobs = list(
        session.scalars(
            select(Job)
            .where(
                Job.paused_at.is_not(None),
                Job.cancelled_at.is_(None),
                Job.pause_probed_at < now - timedelta(seconds=interval_s),
            )
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    out = []
    for job in jobs:
        job.pause_probed_at = now
        spec = JobSpec.model_validate(job.spec)
        shapes = probe_shapes(spec, template_for_job(session, job))
        failing = [(c, m) for c, m in shapes if safe_url(c.key) == job.pause_endpoint] or shapes
        out.append(PausedJob(job.id, job.team_id, failing))
    session.flush()
    return out


def probe_failed(session: Session, job_id: uuid.UUID, error: str) -> None:
    session.execute(
        update(Job).where(Job.id == job_id, Job.paused_at.is_not(None)).values(pause_error=error)
    )


def resume_by_id(session: Session, job_id: uuid.UUID) -> bool:
    job = session.get(Job, job_id)
    return job is not None and resume(session, job)
