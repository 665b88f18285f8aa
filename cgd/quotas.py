"""Per-team quotas: jobs not yet finished, job items stored, items of unfinished jobs.

Defaults come from settings (``CGD_QUOTA_*``); ``cgd admin set-quota`` stores a team's own
limits in ``team_quotas``. A request over a quota is refused whole (429 with ``Retry-After``),
before anything is written.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cgd.db.models import Dataset, Job, PromptTemplate, Snapshot, Team, TeamQuota, TrainingRun
from cgd.errors import CgdError, NotFound
from cgd.settings import Settings


class QuotaExceeded(CgdError):
    """The team is over a quota; retry once some of its work has finished or been deleted."""

    status_code = 429

    def __init__(self, detail: Any, retry_after_s: int) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after_s)}


@dataclass
class Limits:
    queued_jobs: int
    stored_items: int
    inflight_items: int
    team_max_running_chunks: int


QUOTA_FIELDS = ("queued_jobs", "stored_items", "inflight_items", "team_max_running_chunks")


def limits_for(session: Session, team_id: uuid.UUID, settings: Settings) -> Limits:
    row = session.get(TeamQuota, team_id)

    def pick(name: str, default: int) -> int:
        value = getattr(row, name, None) if row is not None else None
        return default if value is None else int(value)

    return Limits(
        queued_jobs=pick("queued_jobs", settings.quota_queued_jobs),
        stored_items=pick("stored_items", settings.quota_stored_items),
        inflight_items=pick("inflight_items", settings.quota_inflight_items),
        team_max_running_chunks=pick("team_max_running_chunks", settings.team_max_running_chunks),
    )


def usage(session: Session, team_id: uuid.UUID) -> dict[str, int]:
    unfinished = (
        Job.finished_at.is_(None),
        Job.cancelled_at.is_(None),
        Job.error.is_(None),
    )
    jobs, inflight = session.execute(
        select(func.count(), func.coalesce(func.sum(Job.total_items), 0)).where(
            Job.team_id == team_id, *unfinished
        )
    ).one()
    stored = session.scalar(
        select(func.coalesce(func.sum(Job.total_items), 0)).where(Job.team_id == team_id)
    )
    return {
        "queued_jobs": int(jobs),
        "stored_items": int(stored or 0),
        "inflight_items": int(inflight),
    }


def check_new_job(session: Session, team_id: uuid.UUID, items: int, settings: Settings) -> None:
    """Refuse a job of ``items`` items that would take the team over a quota. Locks the team's
    row first, so concurrent submissions of one team are checked one after the other."""
    session.execute(select(Team.id).where(Team.id == team_id).with_for_update())
    limits = limits_for(session, team_id, settings)
    used = usage(session, team_id)
    wanted = {"queued_jobs": 1, "stored_items": items, "inflight_items": items}
    for name, extra in wanted.items():
        limit = getattr(limits, name)
        if used[name] + extra > limit:
            raise QuotaExceeded(
                {
                    "reason": f"over the team's {name} quota: {used[name]} in use + {extra} "
                    f"requested > {limit}",
                    "quota": name,
                    "limit": limit,
                    "used": used[name],
                    "requested": extra,
                },
                settings.quota_retry_after_s,
            )


def set_quota(session: Session, team_name: str, values: dict[str, int | None]) -> TeamQuota:
    """Set (a value) or reset to the default (None) each named quota of ``team_name``."""
    team = session.scalar(select(Team).where(Team.name == team_name))
    if team is None:
        raise NotFound({"team": team_name, "reason": "no such team"})
    row = session.get(TeamQuota, team.id)
    if row is None:
        row = TeamQuota(team_id=team.id)
        session.add(row)
    for name, value in values.items():
        if name not in QUOTA_FIELDS:
            raise ValueError(name)
        setattr(row, name, value)
    session.flush()
    return row


# --- stored resources: datasets, bytes, snapshots, template versions, queued runs --------------


def _refuse_over(setting: str, used: int, requested: int, limit: int, settings: Settings) -> None:
    if used + requested > limit:
        raise QuotaExceeded(
            {
                "reason": f"over the team's {setting} quota: {used} in use + {requested} "
                f"requested > {limit}; delete some or ask the operator to raise {setting}",
                "quota": setting,
                "limit": limit,
                "used": used,
                "requested": requested,
            },
            settings.quota_retry_after_s,
        )


def _lock_team(session: Session, team_id: uuid.UUID) -> None:
    # Concurrent creations of one team are counted one after the other (other teams don't wait).
    session.execute(select(Team.id).where(Team.id == team_id).with_for_update())


def check_new_dataset(
    session: Session, team_id: uuid.UUID, size_bytes: int, settings: Settings
) -> None:
    """Refuse a dataset of ``size_bytes`` that would exceed CGD_QUOTA_DATASETS or
    CGD_QUOTA_STORED_BYTES."""
    _lock_team(session, team_id)
    count, stored = session.execute(
        select(func.count(), func.coalesce(func.sum(Dataset.size_bytes), 0)).where(
            Dataset.team_id == team_id
        )
    ).one()
    _refuse_over("CGD_QUOTA_DATASETS", int(count), 1, settings.quota_datasets, settings)
    _refuse_over(
        "CGD_QUOTA_STORED_BYTES", int(stored), size_bytes, settings.quota_stored_bytes, settings
    )


def check_new_snapshot(session: Session, team_id: uuid.UUID, settings: Settings) -> None:
    _lock_team(session, team_id)
    used = session.scalar(select(func.count()).where(Snapshot.team_id == team_id)) or 0
    _refuse_over("CGD_QUOTA_SNAPSHOTS", int(used), 1, settings.quota_snapshots, settings)


def check_new_template_version(session: Session, team_id: uuid.UUID, settings: Settings) -> None:
    _lock_team(session, team_id)
    used = session.scalar(select(func.count()).where(PromptTemplate.team_id == team_id)) or 0
    limit = settings.quota_template_versions
    _refuse_over("CGD_QUOTA_TEMPLATE_VERSIONS", int(used), 1, limit, settings)


def check_new_run(session: Session, team_id: uuid.UUID, settings: Settings) -> None:
    """Runs queued or running count: finished ones free their room (they hold no GPU)."""
    _lock_team(session, team_id)
    used = session.scalar(
        select(func.count()).where(
            TrainingRun.team_id == team_id, TrainingRun.status.in_(("queued", "running"))
        )
    )
    _refuse_over("CGD_QUOTA_QUEUED_RUNS", int(used or 0), 1, settings.quota_queued_runs, settings)
