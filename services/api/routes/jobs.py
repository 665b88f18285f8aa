"""/v1/jobs: create (202), list, get (status), cancel, retry-failed, triplets."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError

from cgd.db.models import Job
from cgd.db.queries import team_newest_first
from cgd.errors import DatasetNotFound, IdempotencyKeyReused, InvalidRequest, Unauthorized
from cgd.generation import jobs as svc
from cgd.generation.spec import JobSpec, check_spec
from services.api.deps import SessionDep, SettingsDep, TeamDep
from services.api.errors import JSONBody, error_responses
from services.api.pagination import (
    created_page,
    decode_created_cursor,
    decode_cursor,
    encode_cursor,
)
from services.api.schemas import Page
from services.worker.celery_app import chunk_messages

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post(
    "",
    status_code=202,
    responses=error_responses(Unauthorized, DatasetNotFound, InvalidRequest, IdempotencyKeyReused),
)
def create_job(
    request: Request,
    spec: JobSpec,
    session: SessionDep,
    team_id: TeamDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    check_spec(spec, settings.endpoint_allowlist)
    req_hash = svc.spec_hash(spec)
    replay = svc.find_replay(session, team_id, idempotency_key, req_hash)
    if replay is None:
        try:
            with session.begin_nested():
                job, refs = svc.create_job(session, team_id, spec, idempotency_key)
            request.state.outbox.extend(chunk_messages(refs))  # sent after the commit
            return {"id": str(job.id), "status": "queued", "total_items": job.total_items}
        except IntegrityError:
            # A concurrent request with the same Idempotency-Key won the race.
            replay = svc.find_replay(session, team_id, idempotency_key, req_hash)
            if replay is None:
                raise
    status = svc.job_status(session, replay)["status"]
    return {"id": str(replay.id), "status": status, "total_items": replay.total_items}


@router.get("", response_model=Page[dict[str, Any]], responses=error_responses(Unauthorized))
def list_jobs(
    session: SessionDep,
    team_id: TeamDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Page[dict[str, Any]]:
    rows = team_newest_first(session, Job, team_id, limit + 1, decode_created_cursor(cursor))
    # One aggregate for the whole page, not one per job.
    statuses = {s["id"]: s for s in svc.job_statuses(session, rows[:limit])}
    return created_page(rows, limit, lambda j: statuses[str(j.id)])


@router.get("/{job_id}", responses=error_responses(Unauthorized, svc.JobNotFound))
async def get_job(request: Request, team_id: TeamDep, job_id: uuid.UUID) -> JSONBody:
    """Job status. Computed at most once per second per job (it aggregates the job's items) and
    answered from the event loop in between: many clients poll it."""
    cache = request.app.state.status_cache
    status = cache.get(job_id)
    if status is None or status["_team_id"] != team_id:
        # Single flight: when the entry expires, one request recomputes and the others that
        # arrive meanwhile wait for that result instead of each running the aggregate.
        # Keyed by team too: another team's request for this id must never share our answer
        # (or our 404).
        pending: dict[Any, asyncio.Future[dict[str, Any]]] = request.app.state.status_pending
        key = (job_id, team_id)
        future = pending.get(key)
        if future is None:
            future = asyncio.ensure_future(
                run_in_threadpool(_fresh_status, request, team_id, job_id)
            )
            pending[key] = future
            future.add_done_callback(lambda _: pending.pop(key, None))
        status = await asyncio.shield(future)
        cache.put(job_id, status)
    return JSONBody({k: v for k, v in status.items() if k != "_team_id"})


def _fresh_status(request: Request, team_id: uuid.UUID, job_id: uuid.UUID) -> dict[str, Any]:
    with request.app.state.sessionmaker() as session:
        status = svc.job_status(session, svc.get_job(session, team_id, job_id))
    return {**status, "_team_id": team_id}


@router.post(
    "/{job_id}/cancel",
    responses=error_responses(Unauthorized, svc.JobNotFound, svc.JobNotCancellable),
)
def cancel_job(
    request: Request, session: SessionDep, team_id: TeamDep, job_id: uuid.UUID
) -> dict[str, Any]:
    job = svc.get_job(session, team_id, job_id)
    svc.cancel_job(session, job)
    request.app.state.status_cache.pop(job.id)
    return {"id": str(job.id), "status": "cancelled"}


@router.post(
    "/{job_id}/retry-failed",
    status_code=202,
    responses=error_responses(Unauthorized, svc.JobNotFound, svc.JobNotRetryable),
)
def retry_failed(
    request: Request, session: SessionDep, team_id: TeamDep, job_id: uuid.UUID
) -> dict[str, Any]:
    job = svc.get_job(session, team_id, job_id)
    n, refs = svc.retry_failed(session, job)
    request.app.state.status_cache.pop(job.id)
    request.state.outbox.extend(chunk_messages(refs))
    return {"id": str(job.id), "retried": n}


@router.get(
    "/{job_id}/triplets",
    response_model=Page[dict[str, Any]],
    responses=error_responses(Unauthorized, svc.JobNotFound, InvalidRequest),
)
def list_triplets(
    session: SessionDep,
    team_id: TeamDep,
    job_id: uuid.UUID,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    status: Literal["pending", "probed", "critiqued", "refined", "verified", "failed"]
    | None = None,
    verdict: Literal["right", "wrong", "none"] | None = None,
    initial_correct: bool | None = None,
    refined_correct: bool | None = None,
) -> Page[dict[str, Any]]:
    job = svc.get_job(session, team_id, job_id)
    after = decode_cursor(cursor, 2)
    if after is not None and not all(isinstance(v, int) for v in after):
        raise InvalidRequest({"field": "cursor", "reason": "invalid cursor"})
    rows = svc.list_triplets(
        session,
        job,
        limit + 1,
        (after[0], after[1]) if after else None,
        status=status,
        verdict=verdict,
        initial_correct=initial_correct,
        refined_correct=refined_correct,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(rows[-1]["idx"], rows[-1]["sample"]) if more else None
    return Page[dict[str, Any]](data=rows, next_cursor=nxt)
