"""/v1/training-runs: create (202), list, get, events, cancel; and the trainer's side: events in
and the snapshot export, both authorised by the run's own token."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from cgd import snapshots
from cgd import training_runs as svc
from cgd.db.models import TrainingRun
from cgd.db.queries import team_newest_first
from cgd.errors import InvalidRequest, NotFound, Unauthorized
from services.api.deps import SessionDep, TeamDep
from services.api.errors import JSONBody, error_responses
from services.api.pagination import (
    created_page,
    decode_created_cursor,
    decode_cursor,
    encode_cursor,
)
from services.api.schemas import Page

router = APIRouter(prefix="/v1/training-runs", tags=["training runs"])
TokenHeader = Annotated[str | None, Header(alias="Authorization", include_in_schema=False)]


@router.post("", status_code=202, responses=error_responses(Unauthorized, NotFound, InvalidRequest))
def create_run(
    request: Request, spec: svc.TrainingRunSpec, session: SessionDep, team_id: TeamDep
) -> JSONBody:
    run, token = svc.create_run(session, team_id, spec)
    # The message carries the run id and its token (the trainer's only credential).
    request.state.outbox.append(("cgd.train.run", [str(run.id), token], "train"))
    return JSONBody({"id": str(run.id), "status": run.status}, status_code=202)


@router.get("", response_model=Page[dict[str, Any]], responses=error_responses(Unauthorized))
def list_runs(
    session: SessionDep,
    team_id: TeamDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Page[dict[str, Any]]:
    rows = team_newest_first(
        session, TrainingRun, team_id, limit + 1, decode_created_cursor(cursor)
    )
    for run in rows:
        svc.check_liveness(session, run)
    return created_page(rows, limit, svc.public)


@router.get("/{run_id}", responses=error_responses(Unauthorized, svc.TrainingRunNotFound))
def get_run(session: SessionDep, team_id: TeamDep, run_id: uuid.UUID) -> dict[str, Any]:
    return svc.public(svc.get_run(session, team_id, run_id))


@router.get(
    "/{run_id}/events",
    response_model=Page[dict[str, Any]],
    responses=error_responses(Unauthorized, svc.TrainingRunNotFound),
)
def list_events(
    session: SessionDep,
    team_id: TeamDep,
    run_id: uuid.UUID,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    cursor: str | None = None,
) -> Page[dict[str, Any]]:
    run = svc.get_run(session, team_id, run_id)
    after = decode_cursor(cursor, 1)
    if after is not None and not isinstance(after[0], int):
        raise InvalidRequest({"field": "cursor", "reason": "invalid cursor"})
    rows = svc.list_events(session, run, limit + 1, after[0] if after else None)
    more = len(rows) > limit
    rows = rows[:limit]
    data = [{"id": e.id, "type": e.type, "at": e.at, "data": e.data} for e in rows]
    return Page[dict[str, Any]](data=data, next_cursor=encode_cursor(rows[-1].id) if more else None)


@router.post(
    "/{run_id}/cancel",
    responses=error_responses(Unauthorized, svc.TrainingRunNotFound, svc.TrainingRunFinished),
)
def cancel_run(session: SessionDep, team_id: TeamDep, run_id: uuid.UUID) -> dict[str, Any]:
    run = svc.get_run(session, team_id, run_id)
    svc.cancel_run(session, run)
    return svc.public(run)


# --- the trainer's side (run token) ------------------------------------------------------------


@router.post("/{run_id}/events", responses=error_responses(Unauthorized, InvalidRequest))
def post_event(
    session: SessionDep, run_id: uuid.UUID, event: svc.EventIn, authorization: TokenHeader = None
) -> dict[str, Any]:
    """Trainer → API: status changes, step metrics, eval results, artifact paths. The answer
    says whether the run was cancelled, so the trainer stops at its next step."""
    run = svc.run_for_token(session, run_id, authorization)
    return svc.record_event(session, run, event)


@router.get("/{run_id}/spec", responses=error_responses(Unauthorized))
def run_spec(
    session: SessionDep, run_id: uuid.UUID, authorization: TokenHeader = None
) -> dict[str, Any]:
    run = svc.run_for_token(session, run_id, authorization)
    return svc.public(run)


@router.get("/{run_id}/data", responses=error_responses(Unauthorized))
def run_data(
    request: Request,
    session: SessionDep,
    run_id: uuid.UUID,
    split: Literal["train", "val", "all"] = "train",
    authorization: TokenHeader = None,
) -> StreamingResponse:
    """The run's snapshot in the native layout (JSONL), for the trainer to download."""
    run = svc.run_for_token(session, run_id, authorization)
    body = snapshots.stream_export(request.app.state.sessionmaker, run.snapshot_id, split=split)
    return StreamingResponse(body, media_type="application/x-ndjson")


@router.get("/{run_id}/eval-sets/{dataset_id}", responses=error_responses(Unauthorized, NotFound))
def run_eval_set(
    session: SessionDep, run_id: uuid.UUID, dataset_id: uuid.UUID, authorization: TokenHeader = None
) -> Response:
    """An uploaded dataset the run evaluates on, as JSONL rows {id, problem, answer}."""
    run = svc.run_for_token(session, run_id, authorization)
    rows = svc.eval_dataset_rows(session, run, dataset_id)
    body = b"".join(
        orjson.dumps({"id": item_id, "problem": prompt, "answer": ref}) + b"\n"
        for item_id, prompt, ref in rows
    )
    return Response(body, media_type="application/x-ndjson")
