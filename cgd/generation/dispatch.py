"""Fair dispatch: which chunk a free worker slot runs next (docs/scheduling.md).

Task messages carry no chunk: each one is a token for "run the next chunk". The chunk is chosen
here, in one short transaction, so the order of messages in the (FIFO) broker queue never
decides who is served:

1. teams with claimable work, fewest running chunks first (max-min fair share of the slots),
   ties broken by who was served longest ago (round-robin);
2. a team at its running-chunk cap (``CGD_TEAM_MAX_RUNNING_CHUNKS`` or its quota override) is
   skipped;
3. within the team: job priority high → normal → low, then oldest job, then lowest chunk.

A team's row is locked (``FOR UPDATE``, in a savepoint) while one of its chunks is claimed, so
two workers can never both take a team's last free slot; concurrent claims for one team wait
their turn. The chunk row is locked with ``SKIP LOCKED``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from cgd.db.bulk import is_postgres
from cgd.db.models import Job, JobChunk, Team, TeamQuota, utcnow


def _claimable(now: datetime) -> ColumnElement[bool]:
    """A chunk nobody live holds: never started, released, or its runner's lease ran out."""
    return and_(
        JobChunk.status != "done",
        or_(JobChunk.lease_until.is_(None), JobChunk.lease_until < now),
    )


def _open_job() -> ColumnElement[bool]:
    return and_(
        Job.cancelled_at.is_(None),
        Job.paused_at.is_(None),
        Job.finished_at.is_(None),
        Job.error.is_(None),
    )


def _running(now: datetime) -> ColumnElement[bool]:
    return and_(JobChunk.status == "running", JobChunk.lease_until >= now)


def running_per_team(session: Session, now: datetime) -> dict[uuid.UUID, int]:
    rows = session.execute(
        select(Job.team_id, func.count())
        .select_from(JobChunk)
        .join(Job, Job.id == JobChunk.job_id)
        .where(_running(now))
        .group_by(Job.team_id)
    )
    return {team: n for team, n in rows}


def claimable_chunks(session: Session, now: datetime | None = None) -> int:
    """How many chunks could be handed out now (caps aside): what the sweeper tops tokens up to."""
    now = now or utcnow()
    return int(
        session.scalar(
            select(func.count())
            .select_from(JobChunk)
            .join(Job, Job.id == JobChunk.job_id)
            .where(_open_job(), _claimable(now))
        )
        or 0
    )


def claim_next(
    session: Session, owner: str, lease_s: float, default_cap: int, now: datetime | None = None
) -> tuple[uuid.UUID, int] | None:
    """Lease the next chunk in fair order to ``owner``; None when nothing may run now."""
    for _ in range(_REORDER_TRIES - 1):
        try:
            return _claim_once(session, owner, lease_s, default_cap, now or utcnow(), True)
        except _StaleOrder:
            continue
    return _claim_once(session, owner, lease_s, default_cap, now or utcnow(), False)


class _StaleOrder(Exception):
    """While a claim waited for a team's lock another claim served that team: the order it
    chose from (fewest running first) is stale, and following it would hand one team two
    slots while another has none. The claim starts over with fresh counts, a few times at
    most."""


_REORDER_TRIES = 3


def _claim_once(
    session: Session, owner: str, lease_s: float, default_cap: int, now: datetime, reorder: bool
) -> tuple[uuid.UUID, int] | None:
    jobs = session.execute(
        select(Job.team_id, Job.id, Job.priority, Job.created_at).where(
            _open_job(),
            exists(select(JobChunk.chunk_no).where(JobChunk.job_id == Job.id, _claimable(now))),
        )
    ).all()
    if not jobs:
        return None
    by_team: dict[uuid.UUID, list[Any]] = {}
    for team_id, job_id, priority, created in jobs:
        by_team.setdefault(team_id, []).append((-priority, created, job_id))
    running = running_per_team(session, now)
    caps = dict(
        session.execute(
            select(TeamQuota.team_id, TeamQuota.team_max_running_chunks).where(
                TeamQuota.team_id.in_(list(by_team)),
                TeamQuota.team_max_running_chunks.is_not(None),
            )
        ).all()
    )
    last = dict(
        session.execute(
            select(Team.id, Team.last_dispatch_at).where(Team.id.in_(list(by_team)))
        ).all()
    )
    oldest = datetime.min.replace(tzinfo=now.tzinfo)
    order = sorted(by_team, key=lambda t: (running.get(t, 0), last.get(t) or oldest, str(t)))
    for team_id in order:
        cap = caps.get(team_id) or default_cap
        if running.get(team_id, 0) >= cap:
            continue
        # Wait for the team's row: claims for one team take turns (a few ms each). Skipping a
        # locked team instead sent a worker slot idle whenever several slots asked at once
        # (one team's job, four tokens arriving together: one chunk ran instead of four). The
        # lock of a team passed over is released with its savepoint, so a claim holds at most
        # one team row while it waits for another, and two claims can never deadlock.
        # (SQLite, embedded: one writer at a time, no row locks and no savepoint needed.)
        savepoint = session.begin_nested() if is_postgres(session) else None
        session.execute(select(Team.id).where(Team.id == team_id).with_for_update())
        # Recount under the lock: a claim that committed since the first count must be seen.
        now_running = running_per_team_one(session, team_id, now)
        if reorder and now_running != running.get(team_id, 0):
            if savepoint is not None:
                savepoint.rollback()
            raise _StaleOrder
        if now_running < cap:
            claimed = _claim_in_team(
                session, team_id, by_team[team_id], owner, lease_s, max(now, utcnow())
            )
            if claimed is not None:
                if savepoint is not None:
                    savepoint.commit()
                return claimed
        if savepoint is not None:
            savepoint.rollback()
    return None


def _claim_in_team(
    session: Session,
    team_id: uuid.UUID,
    jobs: list[Any],
    owner: str,
    lease_s: float,
    now: datetime,
) -> tuple[uuid.UUID, int] | None:
    for _, _, job_id in sorted(jobs):
        chunk_no = session.scalar(
            select(JobChunk.chunk_no)
            .where(JobChunk.job_id == job_id, _claimable(now))
            .order_by(JobChunk.chunk_no)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if chunk_no is None:
            continue
        session.execute(
            update(JobChunk)
            .where(JobChunk.job_id == job_id, JobChunk.chunk_no == chunk_no)
            .values(
                status="running",
                lease_owner=owner,
                lease_until=now + timedelta(seconds=lease_s),
                deliveries=JobChunk.deliveries + 1,
            )
        )
        session.execute(
            update(Job).where(Job.id == job_id, Job.started_at.is_(None)).values(started_at=now)
        )
        session.execute(update(Team).where(Team.id == team_id).values(last_dispatch_at=now))
        return job_id, chunk_no
    return None


def running_per_team_one(session: Session, team_id: uuid.UUID, now: datetime) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(JobChunk)
            .join(Job, Job.id == JobChunk.job_id)
            .where(Job.team_id == team_id, _running(now))
        )
        or 0
    )
