"""Job operations: create, status, list, cancel, retry-failed, resume, delete, triplets.

Functions only ``flush()``; the request boundary commits and then sends the task messages that
these functions return (never before the commit: a worker must always find its rows).
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cgd import idempotency, quotas
from cgd.datasets.ops import get_dataset
from cgd.db.bulk import is_postgres
from cgd.db.models import (
    ITEM_STATES,
    TERMINAL_STATES,
    DatasetItem,
    Generation,
    GenerationBatch,
    Job,
    JobChunk,
    JobItem,
    JobItemCount,
    JobRetry,
    JobUsage,
    utcnow,
)
from cgd.db.queries import team_newest_first, team_row
from cgd.enums import PRIORITY_RANK
from cgd.errors import InvalidRequest
from cgd.generation.spec import JobSpec
from cgd.jobs import pause
from cgd.jobs.errors import JobNotCancellable, JobNotFound, JobNotPaused, JobNotRetryable
from cgd.jobs.quality import CACHE as QUALITY_CACHE
from cgd.jobs.schemas import JobCreated, JobRetried, JobStatusOut, Quality, TripletOut
from cgd.pagination import Page, created_page, decode_created_cursor, decode_cursor, page
from cgd.settings import Settings, get_settings
from cgd.tasks import Message, run_tokens
from cgd.templates import ops as templates
from cgd.templates.prompt_size import check_rows_fit


def spec_hash(spec: JobSpec) -> str:
    return idempotency.request_hash(spec.fingerprint())


def find_replay(session: Session, team_id: uuid.UUID, key: str | None, req_hash: str) -> Job | None:
    return idempotency.find_replay(session, Job, team_id, key, req_hash)


def create(
    session: Session,
    team_id: uuid.UUID,
    spec: JobSpec,
    idempotency_key: str | None,
    settings: Settings | None = None,
) -> tuple[JobCreated, list[Message]]:
    """Create the job (or answer the one an identical earlier request created) and the task
    messages to send once the request commits."""
    settings = settings or get_settings()
    req_hash = spec_hash(spec)
    replay = find_replay(session, team_id, idempotency_key, req_hash)
    if replay is None:
        try:
            with session.begin_nested():
                job = create_job(session, team_id, spec, idempotency_key, settings)
            tokens = run_tokens(min(job.num_chunks, settings.dispatch_tokens))
            return JobCreated(id=job.id, status="queued", total_items=job.total_items), tokens
        except IntegrityError:
            # A concurrent request with the same Idempotency-Key won the race.
            replay = find_replay(session, team_id, idempotency_key, req_hash)
            if replay is None:
                raise
    status = job_status(session, replay).status
    return JobCreated(id=replay.id, status=status, total_items=replay.total_items), []


def create_job(
    session: Session,
    team_id: uuid.UUID,
    spec: JobSpec,
    idempotency_key: str | None = None,
    settings: Settings | None = None,
) -> Job:
    """The job and its chunk rows; item rows are written as each chunk first runs (so a job of
    millions of items is created in well under a second, docs/benchmarks.md)."""
    dataset = get_dataset(session, team_id, spec.dataset_id)
    quotas.check_new_job(
        session, team_id, dataset.num_items * spec.samples_per_prompt, settings or get_settings()
    )
    if spec.student is None:
        missing = session.scalar(
            select(func.count())
            .select_from(DatasetItem)
            .where(DatasetItem.dataset_id == dataset.id, DatasetItem.response.is_(None))
        )
        if missing:
            raise InvalidRequest(
                {
                    "field": "student",
                    "reason": f"student is null but {missing} dataset items have no response "
                    "to use as the initial answer",
                }
            )
    template_id, template_version = templates.resolve(session, team_id, spec.template)
    check_rows_fit(
        session,
        dataset,
        templates.resolved(session, template_id, spec.template),
        dataset_answers=spec.student is None,
        teacher_solution=spec.teacher_solution,
        max_chars=(settings or get_settings()).max_prompt_chars,
    )
    n_chunks = max(1, math.ceil(dataset.num_items / spec.chunk_size))
    job = Job(
        team_id=team_id,
        dataset_id=dataset.id,
        spec=spec.stored(),
        template_version=template_version,
        template_id=template_id,
        total_items=dataset.num_items * spec.samples_per_prompt,
        num_chunks=n_chunks,
        idempotency_key=idempotency_key,
        request_hash=spec_hash(spec),
        priority=PRIORITY_RANK[spec.priority],
    )
    session.add(job)
    session.flush()
    now = utcnow()
    session.execute(
        insert(JobChunk),
        [
            {
                "job_id": job.id,
                "chunk_no": c,
                "start_idx": c * spec.chunk_size,
                "end_idx": min(dataset.num_items, (c + 1) * spec.chunk_size),
                "status": "queued",
                "deliveries": 0,
                "enqueued_at": now,
            }
            for c in range(n_chunks)
        ],
    )
    session.flush()
    return job


def get_job(session: Session, team_id: uuid.UUID, job_id: uuid.UUID) -> Job:
    return team_row(session, Job, team_id, job_id, JobNotFound, "job_id")


def list_jobs(
    session: Session, team_id: uuid.UUID, limit: int, cursor: str | None
) -> Page[JobStatusOut]:
    rows = team_newest_first(session, Job, team_id, limit + 1, decode_created_cursor(cursor))
    # One aggregate for the whole page, not one per job.
    statuses = {s.id: s for s in job_statuses(session, rows[:limit])}
    return created_page(rows, limit, lambda j: statuses[j.id])


def job_status(session: Session, job: Job) -> JobStatusOut:
    """Counts, progress, rate and ETA, all derived from item rows (correct after any crash)."""
    return job_statuses(session, [job])[0]


def job_statuses(session: Session, jobs: list[Job]) -> list[JobStatusOut]:
    """The status of each job from its maintained item counts (a few rows per 256 items; kept
    by a trigger in the transaction of every item write), not a scan of its items; plus the
    quality numbers (their own aggregate, cached: ``cgd.jobs.quality``)."""
    groups = state_groups(session, jobs)
    seen = {
        job_id: (frozenset(tuple(r) for r in rows), _in_flight(rows))
        for job_id, rows in groups.items()
    }
    quality = QUALITY_CACHE.get(session, seen)
    batches = _batches(session, jobs)
    usage = _usage(session, jobs)
    return [
        _status(job, groups[job.id], quality[job.id], batches[job.id], usage[job.id])
        for job in jobs
    ]


def _usage(session: Session, jobs: list[Job]) -> dict[uuid.UUID, dict[str, Any]]:
    """Per job: tokens by stage and outcome, and retried attempts (a few rows per job)."""
    out: dict[uuid.UUID, dict[str, Any]] = {
        j.id: {"by_stage": {}, "retries": {"total": 0, "by_reason": {}, "by_stage": {}}}
        for j in jobs
    }
    ids = list(out)
    for job_id, stage, outcome, prompt, completion in session.execute(
        select(
            JobUsage.job_id,
            JobUsage.stage,
            JobUsage.outcome,
            JobUsage.prompt_tokens,
            JobUsage.completion_tokens,
        ).where(JobUsage.job_id.in_(ids))
    ):
        out[job_id]["by_stage"].setdefault(stage, {})[outcome] = {
            "prompt": int(prompt),
            "completion": int(completion),
        }
    for job_id, stage, reason, n in session.execute(
        select(JobRetry.job_id, JobRetry.stage, JobRetry.reason, JobRetry.n).where(
            JobRetry.job_id.in_(ids)
        )
    ):
        r = out[job_id]["retries"]
        r["total"] += int(n)
        r["by_reason"][reason] = r["by_reason"].get(reason, 0) + int(n)
        r["by_stage"][stage] = r["by_stage"].get(stage, 0) + int(n)
    return out


def _in_flight(rows: list[Any]) -> bool:
    return any(state not in TERMINAL_STATES for state, *_ in rows)


def state_groups(session: Session, jobs: list[Job]) -> dict[uuid.UUID, list[Any]]:
    """Per job: (state, error kind, truncated, items, prompt tokens, completion tokens) rows."""
    groups: dict[uuid.UUID, list[Any]] = {j.id: [] for j in jobs}
    if is_postgres(session):
        c = JobItemCount
        rows = session.execute(
            select(
                c.job_id,
                c.state,
                c.error_kind,
                c.truncated,
                func.sum(c.n),
                func.sum(c.prompt_tokens),
                func.sum(c.completion_tokens),
            )
            .where(c.job_id.in_(list(groups)))
            .group_by(c.job_id, c.state, c.error_kind, c.truncated)
        )
        for job_id, state, kind, trunc, n, pt, ct in rows:
            if int(n) == 0:  # a count the trigger took back down: no item is in that state
                continue
            groups[job_id].append((state, kind or None, trunc, int(n), int(pt), int(ct)))
        return groups
    # SQLite (embedded, small): no trigger there; aggregate the items themselves.
    for row in session.execute(
        select(
            JobItem.job_id,
            JobItem.state,
            JobItem.error_kind,
            JobItem.truncated,
            func.count(),
            func.coalesce(func.sum(JobItem.prompt_tokens), 0),
            func.coalesce(func.sum(JobItem.completion_tokens), 0),
        )
        .where(JobItem.job_id.in_(list(groups)))
        .group_by(JobItem.job_id, JobItem.state, JobItem.error_kind, JobItem.truncated)
    ):
        groups[row[0]].append(row[1:])
    return groups


def _batches(session: Session, jobs: list[Job]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Per job: the Batch API batches of its batch-mode stages, as last polled."""
    batches: dict[uuid.UUID, list[dict[str, Any]]] = {j.id: [] for j in jobs}
    for b in session.scalars(
        select(GenerationBatch)
        .where(GenerationBatch.job_id.in_(list(batches)))
        .order_by(GenerationBatch.chunk_no, GenerationBatch.created_at)
    ):
        batches[b.job_id].append(
            {"chunk": b.chunk_no, "stage": b.stage, "batch_id": b.batch_id, "status": b.status,
             "requests": b.requests, "completed": b.completed, "failed": b.failed,
             "updated_at": b.updated_at}
        )  # fmt: skip
    return batches


def _status(
    job: Job,
    groups: list[Any],
    quality: Quality,
    batches: list[dict[str, Any]],
    usage: dict[str, Any],
) -> JobStatusOut:
    by_state = {s: 0 for s in ITEM_STATES}
    errors: dict[str, int] = {}
    prompt_tokens = completion_tokens = truncated = 0
    for state, kind, trunc, n, pt, ct in groups:
        by_state[state] += n
        prompt_tokens += pt
        completion_tokens += ct
        truncated += n if trunc else 0
        if state == "failed":
            reason = kind or "unknown"
            errors[reason] = errors.get(reason, 0) + n
    total = job.total_items
    # Items of chunks that never ran have no row yet: they are pending.
    by_state["pending"] = total - sum(n for s, n in by_state.items() if s != "pending")
    done = by_state["verified"] + by_state["failed"]
    status = derive_status(job, by_state)
    end = job.finished_at or job.cancelled_at or utcnow()
    elapsed = (end - job.started_at).total_seconds() if job.started_at else 0.0
    rate = done / elapsed if elapsed > 0 else 0.0
    return JobStatusOut.model_validate(
        {
            "id": job.id,
            "dataset_id": job.dataset_id,
            "status": status,
            "counts": {
                "total": total,
                "completed": by_state["verified"],
                "failed": by_state["failed"],
                "pending": total - done,
            },
            "by_stage": by_state,
            "progress": round(done / total, 4) if total else 1.0,
            "items_per_s": round(rate, 2),
            "eta_s": round((total - done) / rate, 1) if rate > 0 and status == "running" else None,
            "tokens": {
                "prompt": prompt_tokens,
                "completion": completion_tokens,
                "by_stage": usage["by_stage"],
            },
            "retries": usage["retries"],
            "errors": errors,
            "truncated": truncated,
            "quality": quality,
            "template_version": job.template_version,
            "spec": JobSpec.model_validate(job.spec).public(),
            "error": job.error,
            "paused": {
                "endpoint": job.pause_endpoint,
                "error": job.pause_error,
                "at": job.paused_at,
            }
            if job.paused_at is not None and status == "paused"
            else None,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "cancelled_at": job.cancelled_at,
            "batches": batches,
        }
    )


def derive_status(job: Job, by_state: dict[str, int]) -> str:
    total = job.total_items
    done = by_state["verified"] + by_state["failed"]
    if job.cancelled_at is not None:
        return "cancelled"
    if job.error is not None:
        return "failed"
    if done >= total:
        # Every item failed: the job as a whole produced nothing.
        return "failed" if total and by_state["failed"] == total else "completed"
    if job.paused_at is not None:
        return "paused"
    if job.started_at is not None or done or by_state["pending"] < total:
        return "running"
    return "queued"


def cancel_job(session: Session, job: Job) -> None:
    status = job_status(session, job).status
    if status in ("completed", "failed", "cancelled"):
        raise JobNotCancellable({"job_id": str(job.id), "status": status})
    job.cancelled_at = utcnow()
    session.flush()


def retry(session: Session, job: Job) -> tuple[JobRetried, list[Message]]:
    n, chunks = retry_failed(session, job)
    return JobRetried(id=job.id, retried=n), run_tokens(min(chunks, get_settings().dispatch_tokens))


def resume(session: Session, job: Job) -> list[Message]:
    """Resume a paused job by hand (the sweeper also does once its endpoint answers)."""
    if not pause.resume(session, job):
        raise JobNotPaused({"job_id": str(job.id), "status": job_status(session, job).status})
    return run_tokens(min(job.num_chunks, get_settings().dispatch_tokens))


def delete_job(session: Session, job: Job) -> None:
    """Cancel the job and remove it with its items and results. Snapshots built from it keep
    their own copies of the triplets; its dataset can be deleted afterwards."""
    job.cancelled_at = job.cancelled_at or utcnow()
    session.flush()
    # Bulk deletes, children first (an ORM cascade would load every row).
    for model in (Generation, JobItem, JobItemCount, JobUsage, JobRetry, JobChunk):
        session.execute(delete(model).where(model.job_id == job.id))
    session.delete(job)
    session.flush()


def retry_failed(session: Session, job: Job) -> tuple[int, int]:
    """Put failed items back to pending and re-enqueue the chunks that hold them."""
    if job.cancelled_at is not None:
        raise JobNotRetryable({"job_id": str(job.id), "status": "cancelled"})
    spec = JobSpec.model_validate(job.spec)
    failed_idx = list(
        session.scalars(
            select(JobItem.idx).where(JobItem.job_id == job.id, JobItem.state == "failed")
        )
    )
    if not failed_idx:
        return 0, 0
    session.execute(
        update(JobItem)
        .where(JobItem.job_id == job.id, JobItem.state == "failed")
        .values(state="pending", error=None, error_kind=None, updated_at=utcnow())
    )
    chunk_nos = sorted({i // spec.chunk_size for i in failed_idx})
    session.execute(
        update(JobChunk)
        .where(JobChunk.job_id == job.id, JobChunk.chunk_no.in_(chunk_nos))
        .values(status="queued", enqueued_at=utcnow(), finished_at=None)
    )
    job.finished_at = None
    job.error = None
    session.flush()
    return len(failed_idx), len(chunk_nos)


# --- triplets --------------------------------------------------------------------------------

TRIPLET_FILTERS = ("status", "verdict", "initial_correct", "refined_correct")


def triplets_page(
    session: Session,
    job: Job,
    limit: int,
    cursor: str | None,
    status: str | None = None,
    verdict: str | None = None,
    initial_correct: bool | None = None,
    refined_correct: bool | None = None,
) -> Page[TripletOut]:
    after = decode_cursor(cursor, (int, int))
    rows = list_triplets(
        session,
        job,
        limit + 1,
        (after[0], after[1]) if after else None,
        status=status,
        verdict=verdict,
        initial_correct=initial_correct,
        refined_correct=refined_correct,
    )
    return page(rows, limit, lambda r: (r["idx"], r["sample"]), TripletOut.model_validate)


def list_triplets(
    session: Session,
    job: Job,
    limit: int,
    after: tuple[int, int] | None,
    status: str | None = None,
    verdict: str | None = None,
    initial_correct: bool | None = None,
    refined_correct: bool | None = None,
) -> list[dict[str, Any]]:
    q = select(JobItem).where(JobItem.job_id == job.id)
    if after is not None:
        q = q.where(
            (JobItem.idx > after[0]) | ((JobItem.idx == after[0]) & (JobItem.sample > after[1]))
        )
    if status is not None:
        q = q.where(JobItem.state == status)
    if verdict is not None:
        q = q.where(JobItem.verdict.is_(None) if verdict == "none" else JobItem.verdict == verdict)
    if initial_correct is not None:
        q = q.where(JobItem.initial_correct.is_(initial_correct))
    if refined_correct is not None:
        q = q.where(JobItem.refined_correct.is_(refined_correct))
    items = list(session.scalars(q.order_by(JobItem.idx, JobItem.sample).limit(limit)))
    if not items:
        return []
    idxs = sorted({i.idx for i in items})
    sources = {
        d.idx: d
        for d in session.scalars(
            select(DatasetItem).where(
                DatasetItem.dataset_id == job.dataset_id, DatasetItem.idx.in_(idxs)
            )
        )
    }
    texts: dict[tuple[int, int, str], Generation] = {
        (g.idx, g.sample, g.stage): g
        for g in session.scalars(
            select(Generation).where(Generation.job_id == job.id, Generation.idx.in_(idxs))
        )
    }
    out = []
    for item in items:
        src = sources[item.idx]
        probe = texts.get((item.idx, item.sample, "probe"))
        critique = texts.get((item.idx, item.sample, "critique"))
        refine = texts.get((item.idx, item.sample, "refine"))
        solve = texts.get((item.idx, item.sample, "solve"))
        out.append(
            {
                "item_id": src.item_id,
                "idx": item.idx,
                "sample": item.sample,
                "prompt": src.prompt,
                "reference": src.reference,
                "solution": src.solution,
                "initial_response": probe.text if probe else src.response,
                "critique": critique.text if critique else None,
                "verdict": item.verdict,
                "refined_response": refine.text if refine else None,
                "teacher_solution": solve.text if solve else None,
                "initial_answer": item.initial_answer,
                "refined_answer": item.refined_answer,
                "initial_correct": item.initial_correct,
                "refined_correct": item.refined_correct,
                "verdict_agrees": item.verdict_agrees,
                "truncated": item.truncated,
                "status": item.state,
                "error": item.error,
                "error_kind": item.error_kind,
                "extra": src.extra,
            }
        )
    return out
