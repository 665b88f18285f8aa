"""Worker-side database operations for generation chunks (sync; run from worker threads).

Leases: a chunk is run by whoever holds an unexpired lease on it. A runner extends its lease while
it works; if it dies, the lease runs out and the fair dispatcher (:mod:`cgd.generation.dispatch`)
hands the chunk to the next free slot. Every result write is idempotent, so a zombie runner and
its successor can overlap without duplicating anything.

Item rows are written when their chunk first runs (not when the job is created), so creating a
job of millions of items writes only its chunk rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    Uuid,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cgd.db.bulk import insert_ignore, is_postgres
from cgd.db.models import (
    TERMINAL_STATES,
    DatasetItem,
    Generation,
    Job,
    JobChunk,
    JobItem,
    JobRetry,
    JobUsage,
    utcnow,
)
from cgd.generation.spec import JobSpec
from cgd.secrets import open_spec
from cgd.templates import Template
from cgd.templates.ops import template_for_job


@dataclass
class StageResult:
    text: str
    finish_reason: str | None


@dataclass
class WorkItem:
    idx: int
    sample: int
    prompt: str
    reference: str | None
    response: str | None  # the dataset's own answer (used when the job has no student)
    state: str
    prompt_tokens: int
    completion_tokens: int
    failures: int
    truncated: bool
    done: dict[str, StageResult] = field(default_factory=dict)  # completed stages


@dataclass
class ChunkWork:
    job_id: uuid.UUID
    team_id: uuid.UUID
    chunk_no: int
    spec: JobSpec
    template_version: str
    template: Template  # the version the job pinned
    items: list[WorkItem]


def claim_chunk(
    session: Session, job_id: uuid.UUID, chunk_no: int, owner: str, lease_s: float
) -> bool:
    """Take the chunk's lease if nobody live holds it. True when this runner now owns it."""
    now = utcnow()
    result: Any = session.execute(
        update(JobChunk)
        .where(
            JobChunk.job_id == job_id,
            JobChunk.chunk_no == chunk_no,
            JobChunk.status != "done",
            or_(JobChunk.lease_until.is_(None), JobChunk.lease_until < now),
        )
        .values(
            status="running",
            lease_owner=owner,
            lease_until=now + timedelta(seconds=lease_s),
            deliveries=JobChunk.deliveries + 1,
        )
    )
    claimed = result.rowcount
    if claimed:
        session.execute(
            update(Job).where(Job.id == job_id, Job.started_at.is_(None)).values(started_at=now)
        )
    return bool(claimed)


def extend_lease(
    session: Session, job_id: uuid.UUID, chunk_no: int, owner: str, lease_s: float
) -> bool:
    """Renew the lease; False means another runner took the chunk over (stop working on it)."""
    result: Any = session.execute(
        update(JobChunk)
        .where(
            JobChunk.job_id == job_id,
            JobChunk.chunk_no == chunk_no,
            JobChunk.lease_owner == owner,
        )
        .values(lease_until=utcnow() + timedelta(seconds=lease_s))
    )
    return bool(result.rowcount)


def is_cancelled(session: Session, job_id: uuid.UUID) -> bool:
    """Cancelled, paused elsewhere, or deleted: stop working on it."""
    row = session.execute(select(Job.cancelled_at, Job.paused_at).where(Job.id == job_id)).first()
    return row is None or row[0] is not None or row[1] is not None


def pause_job(session: Session, job_id: uuid.UUID, endpoint: str, error: str) -> None:
    """The circuit breaker opened for ``endpoint``: park the job until it answers again."""
    now = utcnow()
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.paused_at.is_(None), Job.cancelled_at.is_(None))
        .values(
            paused_at=now,
            pause_endpoint=endpoint[:500],
            pause_error=error[:2000],
            pause_probed_at=now,
        )
    )


def materialize_items(session: Session, job: Job, spec: JobSpec, start: int, end: int) -> None:
    """Write the chunk's item rows (pending) the first time it runs; a no-op afterwards."""
    first = session.scalar(
        select(JobItem.idx).where(JobItem.job_id == job.id, JobItem.idx == start).limit(1)
    )
    if first is not None:
        return
    dialect_insert = postgresql.insert if is_postgres(session) else sqlite.insert
    for sample in range(spec.samples_per_prompt):
        rows = select(
            literal(job.id, Uuid),
            DatasetItem.idx,
            literal(sample, Integer),
            literal("pending", String),
            literal(False),
            literal(0, Integer),
            literal(0, Integer),
            literal(0, Integer),
        ).where(
            DatasetItem.dataset_id == job.dataset_id,
            DatasetItem.idx >= start,
            DatasetItem.idx < end,
        )
        columns = [
            "job_id", "idx", "sample", "state", "truncated", "failures", "prompt_tokens",
            "completion_tokens",
        ]  # fmt: skip
        session.execute(dialect_insert(JobItem).from_select(columns, rows).on_conflict_do_nothing())


def load_chunk(session: Session, job_id: uuid.UUID, chunk_no: int) -> ChunkWork | None:
    """Everything a runner needs, including what earlier runs already completed."""
    job = session.get(Job, job_id)
    chunk = session.get(JobChunk, (job_id, chunk_no))
    if job is None or chunk is None or job.cancelled_at is not None:
        return None
    spec = JobSpec.model_validate(open_spec(job.spec))
    materialize_items(session, job, spec, chunk.start_idx, chunk.end_idx)
    in_chunk = and_(JobItem.idx >= chunk.start_idx, JobItem.idx < chunk.end_idx)
    # Columns, not entities: a chunk is hundreds of rows, and building an ORM object per row
    # (identity map, instance state) showed up in the worker's profile at 512 calls/s.
    rows = session.execute(
        select(
            JobItem.idx,
            JobItem.sample,
            DatasetItem.prompt,
            DatasetItem.reference,
            DatasetItem.response,
            JobItem.state,
            JobItem.prompt_tokens,
            JobItem.completion_tokens,
            JobItem.failures,
            JobItem.truncated,
        )
        .join(
            DatasetItem,
            and_(DatasetItem.dataset_id == job.dataset_id, DatasetItem.idx == JobItem.idx),
        )
        .where(JobItem.job_id == job_id, in_chunk)
        .order_by(JobItem.idx, JobItem.sample)
    ).all()
    # The selected columns are named as WorkItem's fields.
    items = {(r.idx, r.sample): WorkItem(**r._asdict()) for r in rows}
    for idx, sample, stage, body, finish in session.execute(
        select(
            Generation.idx,
            Generation.sample,
            Generation.stage,
            Generation.text,
            Generation.finish_reason,
        ).where(
            Generation.job_id == job_id,
            Generation.idx >= chunk.start_idx,
            Generation.idx < chunk.end_idx,
        )
    ):
        item = items.get((idx, sample))
        if item is not None:
            item.done[stage] = StageResult(body, finish)
    return ChunkWork(
        job_id=job_id,
        team_id=job.team_id,
        chunk_no=chunk_no,
        spec=spec,
        template_version=job.template_version,
        template=template_for_job(session, job),
        items=list(items.values()),
    )


_ITEM_UPDATE = (
    update(JobItem)
    .where(
        JobItem.job_id == bindparam("k_job"),
        JobItem.idx == bindparam("k_idx"),
        JobItem.sample == bindparam("k_sample"),
        # A finished item is never moved back. (Literal SQL: executemany can't expand IN lists.)
        text("job_items.state NOT IN ('verified', 'failed')"),
    )
    .values(
        state=bindparam("state"),
        verdict=bindparam("verdict"),
        initial_answer=bindparam("initial_answer"),
        refined_answer=bindparam("refined_answer"),
        initial_correct=bindparam("initial_correct"),
        refined_correct=bindparam("refined_correct"),
        verdict_agrees=bindparam("verdict_agrees"),
        truncated=bindparam("truncated"),
        error_kind=bindparam("error_kind"),
        error=bindparam("error"),
        failures=bindparam("failures"),
        prompt_tokens=bindparam("prompt_tokens"),
        completion_tokens=bindparam("completion_tokens"),
        updated_at=bindparam("updated_at"),
    )
)


@dataclass
class UsageDelta:
    """Tokens and retried attempts counted since the last write: (stage, outcome) ->
    [prompt, completion] and (stage, reason) -> attempts."""

    job_id: uuid.UUID
    tokens: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    retries: dict[tuple[str, str], int] = field(default_factory=dict)


def write_results(
    session: Session,
    generations: list[dict[str, Any]],
    item_updates: list[dict[str, Any]],
    usage: UsageDelta | None = None,
) -> None:
    """One transaction: completed calls (idempotent), the item states they lead to, and the
    job's usage they add (each call counted once: a rolled-back write is retried whole)."""
    insert_ignore(session, Generation, generations)
    if item_updates:
        # In key order: the item-count trigger locks counter rows, and concurrent writers that
        # take them in one order never deadlock.
        item_updates = sorted(item_updates, key=lambda u: (u["k_idx"], u["k_sample"]))
        session.connection().execute(_ITEM_UPDATE, item_updates)
    if usage is not None:
        add_usage(session, usage)


def add_usage(session: Session, usage: UsageDelta) -> None:
    """Add the deltas to the job's usage rows (upserts in key order, for the same reason as
    the item updates)."""
    dialect_insert = postgresql.insert if is_postgres(session) else sqlite.insert
    for (stage, outcome), (prompt, completion) in sorted(usage.tokens.items()):
        ins = dialect_insert(JobUsage).values(
            job_id=usage.job_id,
            stage=stage,
            outcome=outcome,
            prompt_tokens=prompt,
            completion_tokens=completion,
        )
        session.execute(
            ins.on_conflict_do_update(
                index_elements=["job_id", "stage", "outcome"],
                set_={
                    "prompt_tokens": JobUsage.prompt_tokens + ins.excluded.prompt_tokens,
                    "completion_tokens": JobUsage.completion_tokens
                    + ins.excluded.completion_tokens,
                },
            )
        )
    for (stage, reason), n in sorted(usage.retries.items()):
        ins_r = dialect_insert(JobRetry).values(
            job_id=usage.job_id, stage=stage, reason=reason, n=n
        )
        session.execute(
            ins_r.on_conflict_do_update(
                index_elements=["job_id", "stage", "reason"],
                set_={"n": JobRetry.n + ins_r.excluded.n},
            )
        )


def finish_chunk(session: Session, job_id: uuid.UUID, chunk_no: int, owner: str) -> bool:
    """Mark the chunk done if all its items are terminal; close the job when it was the last."""
    chunk = session.get(JobChunk, (job_id, chunk_no))
    if chunk is None:
        return False
    open_items = session.scalar(
        select(func.count()).where(
            JobItem.job_id == job_id,
            JobItem.idx >= chunk.start_idx,
            JobItem.idx < chunk.end_idx,
            JobItem.state.not_in(TERMINAL_STATES),
        )
    )
    now = utcnow()
    if open_items:
        release_chunk(session, job_id, chunk_no, owner)
        return False
    session.execute(
        update(JobChunk)
        .where(JobChunk.job_id == job_id, JobChunk.chunk_no == chunk_no)
        .values(status="done", finished_at=now, lease_owner=None, lease_until=None)
    )
    remaining = session.scalar(
        select(func.count()).where(JobChunk.job_id == job_id, JobChunk.status != "done")
    )
    if not remaining:
        session.execute(
            update(Job).where(Job.id == job_id, Job.finished_at.is_(None)).values(finished_at=now)
        )
    return True


def release_chunk(session: Session, job_id: uuid.UUID, chunk_no: int, owner: str) -> None:
    """Give the lease up early (cancel, stop): the sweeper may hand the chunk to another run."""
    session.execute(
        update(JobChunk)
        .where(
            JobChunk.job_id == job_id,
            JobChunk.chunk_no == chunk_no,
            JobChunk.lease_owner == owner,
        )
        .values(status="queued", lease_owner=None, lease_until=None)
    )
