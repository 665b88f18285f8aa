"""/v1/jobs: create (202), list, get (status), cancel, retry-failed, resume, delete, triplets."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from cgd.datasets.errors import DatasetNotFound
from cgd.enums import ItemState, VerdictFilter
from cgd.errors import IdempotencyKeyReused, InvalidRequest
from cgd.generation.spec import check_spec
from cgd.jobs import ops, preflight
from cgd.jobs.errors import JobNotCancellable, JobNotFound, JobNotPaused, JobNotRetryable
from cgd.jobs.schemas import (
    JobCancelled,
    JobCreated,
    JobResumed,
    JobRetried,
    JobSpec,
    JobStatusOut,
    TripletOut,
)
from cgd.outbound import allowlist_guard
from cgd.pagination import Page
from cgd.quotas import QuotaExceeded
from services.api.deps import IdempotencyKey, SessionDep, SettingsDep, TeamDep
from services.api.errors import JSONBody, error_responses

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post(
    "",
    status_code=202,
    response_model=JobCreated,
    responses=error_responses(DatasetNotFound, InvalidRequest, IdempotencyKeyReused, QuotaExceeded),
)
def create_job(
    request: Request,
    spec: JobSpec,
    session: SessionDep,
    team_id: TeamDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JobCreated:
    """Start a generation job over a dataset: probe (student), critique and refine (teacher),
    verify. Returns at once; poll ``GET /v1/jobs/{id}``. Each endpoint is checked first
    (``GET /models``, unless ``"preflight": false``); over a team quota answers 429."""
    check_spec(spec, settings.endpoint_allowlist)
    preflight.check(
        spec, settings.preflight_timeout_s, allowlist_guard(settings.endpoint_allowlist)
    )
    created, messages = ops.create(session, team_id, spec, idempotency_key, settings)
    request.state.outbox.extend(messages)  # sent after the commit
    return created


@router.get("", response_model=Page[JobStatusOut], responses=error_responses(InvalidRequest))
def list_jobs(
    session: SessionDep,
    team_id: TeamDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Page[JobStatusOut]:
    """The team's jobs with their status, newest first."""
    return ops.list_jobs(session, team_id, limit, cursor)


@router.get("/{job_id}", response_model=JobStatusOut, responses=error_responses(JobNotFound))
async def get_job(request: Request, team_id: TeamDep, job_id: uuid.UUID) -> JSONBody:
    """Job status: counts, progress per stage, rate, ETA, tokens, errors by kind. Computed at
    most twice per second per job (it aggregates the job's items) and answered from the event
    loop in between: many clients poll it."""
    cache = request.app.state.status_cache
    entry, fresh = cache.lookup(job_id) or (None, False)
    # Keyed by team too: another team's request for this id must never share our answer (or
    # our 404).
    ours = entry[1] if entry is not None and entry[0] == team_id else None
    if ours is not None and fresh:
        return JSONBody(ours)
    # Single flight: when the entry expires, one request recomputes it and waits for the
    # result; the requests that arrive meanwhile get the entry it replaces, up to a few seconds
    # old, rather than queueing behind the aggregate (or, without one, wait for that result).
    pending: dict[Any, asyncio.Future[tuple[uuid.UUID, dict[str, Any]]]]
    pending = request.app.state.status_pending
    key = (job_id, team_id)
    future = pending.get(key)
    if future is not None and ours is not None:
        return JSONBody(ours)
    if future is None:
        future = asyncio.ensure_future(run_in_threadpool(_fresh_status, request, team_id, job_id))
        pending[key] = future

        def done(f: asyncio.Future[tuple[uuid.UUID, dict[str, Any]]]) -> None:
            pending.pop(key, None)
            if not f.cancelled() and f.exception() is None:
                cache.put(job_id, f.result())

        future.add_done_callback(done)
    computed = await asyncio.shield(future)
    return JSONBody(computed[1])


def _fresh_status(
    request: Request, team_id: uuid.UUID, job_id: uuid.UUID
) -> tuple[uuid.UUID, dict[str, Any]]:
    with request.app.state.sessionmaker() as session:
        status = ops.job_status(session, ops.get_job(session, team_id, job_id))
    return team_id, status.model_dump(mode="json")


@router.post(
    "/{job_id}/cancel",
    response_model=JobCancelled,
    responses=error_responses(JobNotFound, JobNotCancellable),
)
def cancel_job(
    request: Request, session: SessionDep, team_id: TeamDep, job_id: uuid.UUID
) -> JobCancelled:
    """Stop the job: no new calls are made; items already done are kept."""
    job = ops.get_job(session, team_id, job_id)
    ops.cancel_job(session, job)
    request.app.state.status_cache.pop(job.id)
    return JobCancelled(id=job.id, status="cancelled")


@router.delete("/{job_id}", status_code=204, responses=error_responses(JobNotFound))
def delete_job(request: Request, session: SessionDep, team_id: TeamDep, job_id: uuid.UUID) -> None:
    """Cancel the job and delete it with its triplets. Snapshots built from it keep theirs;
    its dataset can be deleted afterwards."""
    job = ops.get_job(session, team_id, job_id)
    ops.delete_job(session, job)
    request.app.state.status_cache.pop(job_id)


@router.post(
    "/{job_id}/resume",
    status_code=202,
    response_model=JobResumed,
    responses=error_responses(JobNotFound, JobNotPaused),
)
def resume_job(
    request: Request, session: SessionDep, team_id: TeamDep, job_id: uuid.UUID
) -> JobResumed:
    """Resume a paused job now (it also resumes by itself once its endpoint answers)."""
    job = ops.get_job(session, team_id, job_id)
    request.state.outbox.extend(ops.resume(session, job))
    request.app.state.status_cache.pop(job.id)
    return JobResumed(id=job.id, status=ops.job_status(session, job).status)


@router.post(
    "/{job_id}/retry-failed",
    status_code=202,
    response_model=JobRetried,
    responses=error_responses(JobNotFound, JobNotRetryable, InvalidRequest),
)
def retry_failed(
    request: Request,
    session: SessionDep,
    team_id: TeamDep,
    settings: SettingsDep,
    job_id: uuid.UUID,
) -> JobRetried:
    """Put the job's failed items back to pending and run them again (its endpoints must still
    be allowed: the allow-list may have changed since the job was created)."""
    job = ops.get_job(session, team_id, job_id)
    check_spec(JobSpec.model_validate(job.spec), settings.endpoint_allowlist)
    retried, messages = ops.retry(session, job)
    request.app.state.status_cache.pop(job.id)
    request.state.outbox.extend(messages)
    return retried


@router.get(
    "/{job_id}/triplets",
    response_model=Page[TripletOut],
    responses=error_responses(JobNotFound, InvalidRequest),
)
def list_triplets(
    session: SessionDep,
    team_id: TeamDep,
    job_id: uuid.UUID,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    status: ItemState | None = None,
    verdict: VerdictFilter | None = None,
    initial_correct: bool | None = None,
    refined_correct: bool | None = None,
) -> Page[TripletOut]:
    """The job's triplets in dataset order, filtered by state, verdict or correctness."""
    job = ops.get_job(session, team_id, job_id)
    return ops.triplets_page(
        session,
        job,
        limit,
        cursor,
        status=status,
        verdict=verdict,
        initial_correct=initial_correct,
        refined_correct=refined_correct,
    )
