"""Retention: what ``cgd admin gc`` deletes (settings ``CGD_JOB_RETENTION_DAYS``,
``CGD_DATASET_RETENTION_DAYS``; 0 keeps forever).

A finished job (completed, failed or cancelled) older than the job retention goes with its items
and results; snapshots built from it keep their own copies. A dataset older than the dataset
retention goes once no job uses it any more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from cgd.datasets.ops import delete_dataset
from cgd.db.models import Dataset, Job, utcnow
from cgd.jobs.ops import delete_job


@dataclass
class GcReport:
    jobs: int = 0
    datasets: int = 0


def gc(
    session: Session, job_retention_days: float, dataset_retention_days: float, limit: int = 1000
) -> GcReport:
    report = GcReport()
    now = utcnow()
    if job_retention_days > 0:
        cutoff = now - timedelta(days=job_retention_days)
        old = session.scalars(
            select(Job)
            .where(
                or_(Job.finished_at < cutoff, Job.cancelled_at < cutoff),
                Job.created_at < cutoff,
            )
            .limit(limit)
        ).all()
        for job in old:
            delete_job(session, job)
            report.jobs += 1
    if dataset_retention_days > 0:
        cutoff = now - timedelta(days=dataset_retention_days)
        unused = session.scalars(
            select(Dataset)
            .where(Dataset.created_at < cutoff, ~exists().where(Job.dataset_id == Dataset.id))
            .limit(limit)
        ).all()
        for ds in unused:
            delete_dataset(session, ds.team_id, ds.id)
            report.datasets += 1
    return report
