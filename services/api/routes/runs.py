"""/v1/training-runs: create (202), list, get, events, cancel; and the trainer's side: events in
and the snapshot export, both authorised by the run's own token (left out of the public API
document)."""

from __future__ import annotations

import uuid
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from cgd.datasets.errors import DatasetNotFound
from cgd.enums import Split
from cgd.errors import InvalidRequest, NotFound, Unauthorized
from cgd.pagination import Page
from cgd.quotas import QuotaExceeded
from cgd.runs import base_models, ops
from cgd.runs.errors import TrainingRunFinished, TrainingRunNotFound
from cgd.runs.schemas import (
    EventAck,
    EventIn,
    EventOut,
    RunClaim,
    RunCreated,
    RunOut,
    TrainerRunOut,
    TrainingRunSpec,
)
from cgd.snapshots import ops as snapshots
from cgd.snapshots.errors import ModeUnavailable
from services.api.deps import SessionDep, SettingsDep, TeamDep
from services.api.errors import JSONBody, error_responses

router = APIRouter(prefix="/v1/training-runs", tags=["training runs"])
# The trainer's endpoints: authorised by a run token, not a team key; not in the public document.
trainer_router = APIRouter(prefix="/v1/training-runs", include_in_schema=False)
TokenHeader = Annotated[str | None, Header(alias="Authorization", include_in_schema=False)]


@router.post(
    "",
    status_code=202,
    response_model=RunCreated,
    responses=error_responses(
        NotFound, DatasetNotFound, InvalidRequest, ModeUnavailable, QuotaExceeded
    ),
)
def create_run(
    request: Request,
    spec: TrainingRunSpec,
    session: SessionDep,
    team_id: TeamDep,
    settings: SettingsDep,
) -> JSONBody:
    """Fine-tune ``base_model`` on a ready snapshot in one mode; a trainer picks it up and
    reports steps, evaluation and artifacts as events."""
    run, messages = ops.create(session, team_id, spec, settings)
    request.state.outbox.extend(messages)
    return JSONBody({"id": str(run.id), "status": run.status}, status_code=202)


@router.get("", response_model=Page[RunOut], responses=error_responses(InvalidRequest))
def list_runs(
    session: SessionDep,
    team_id: TeamDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Page[RunOut]:
    """The team's training runs, newest first."""
    return ops.list_runs(session, team_id, limit, cursor)


@router.get("/{run_id}", response_model=RunOut, responses=error_responses(TrainingRunNotFound))
def get_run(session: SessionDep, team_id: TeamDep, run_id: uuid.UUID) -> RunOut:
    """One run: status, progress, the latest step metrics, evaluation, artifacts."""
    return ops.public(ops.get_run(session, team_id, run_id))


@router.get(
    "/{run_id}/events",
    response_model=Page[EventOut],
    responses=error_responses(TrainingRunNotFound, InvalidRequest),
)
def list_events(
    session: SessionDep,
    team_id: TeamDep,
    run_id: uuid.UUID,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    cursor: str | None = None,
) -> Page[EventOut]:
    """The run's events in order (status, step, eval, artifact)."""
    return ops.list_events(session, ops.get_run(session, team_id, run_id), limit, cursor)


@router.post(
    "/{run_id}/cancel",
    response_model=RunOut,
    responses=error_responses(TrainingRunNotFound, TrainingRunFinished),
)
def cancel_run(session: SessionDep, team_id: TeamDep, run_id: uuid.UUID) -> RunOut:
    """Stop the run at the trainer's next step."""
    run = ops.get_run(session, team_id, run_id)
    ops.cancel_run(session, run)
    return ops.public(run)


# --- the trainer's side (run token) ------------------------------------------------------------


@trainer_router.post(
    "/{run_id}/events", response_model=EventAck, responses=error_responses(Unauthorized)
)
def post_event(
    session: SessionDep, run_id: uuid.UUID, event: EventIn, authorization: TokenHeader = None
) -> EventAck:
    """Trainer → API: status changes, step metrics, eval results, artifact paths. The answer
    says whether the run was cancelled, so the trainer stops at its next step."""
    run = ops.run_for_token(session, run_id, authorization)
    return ops.record_event(session, run, event)


@trainer_router.post("/claim", response_model=RunClaim)
def claim_run(session: SessionDep, authorization: TokenHeader = None) -> RunClaim:
    """Trainer → API on taking a message: which run to start (round-robin by team; the
    message's token now belongs to it), or none when the message's run stopped waiting. The
    token alone says which message it is: tokens move between queued runs as they are claimed."""
    chosen = ops.claim(session, ops.queued_run_for_token(session, authorization))
    return RunClaim(run_id=chosen.id if chosen is not None else None)


@trainer_router.get("/{run_id}/spec", response_model=TrainerRunOut)
def run_spec(
    session: SessionDep,
    settings: SettingsDep,
    run_id: uuid.UUID,
    authorization: TokenHeader = None,
) -> TrainerRunOut:
    """The run as the trainer needs it: with the location its base model resolves to (the
    operator's registry or the team's earlier run), which the team's own view never shows."""
    run = ops.run_for_token(session, run_id, authorization)
    location = base_models.resolve(session, run.team_id, run.spec["base_model"], settings)
    return TrainerRunOut(**ops.public(run).model_dump(), base_model_location=location)


@trainer_router.get("/{run_id}/data", response_class=StreamingResponse)
def run_data(
    request: Request,
    session: SessionDep,
    run_id: uuid.UUID,
    split: Split = Split.train,
    authorization: TokenHeader = None,
) -> StreamingResponse:
    """The run's snapshot in the native layout (JSONL), for the trainer to download."""
    run = ops.run_for_token(session, run_id, authorization)
    body = snapshots.stream_export(request.app.state.sessionmaker, run.snapshot_id, split=split)
    return StreamingResponse(body, media_type="application/x-ndjson")


@trainer_router.get("/{run_id}/eval-sets/{dataset_id}", response_class=Response)
def run_eval_set(
    session: SessionDep, run_id: uuid.UUID, dataset_id: uuid.UUID, authorization: TokenHeader = None
) -> Response:
    """An uploaded dataset the run evaluates on, as JSONL rows {id, problem, answer}."""
    run = ops.run_for_token(session, run_id, authorization)
    rows = ops.eval_dataset_rows(session, run, dataset_id)
    body = b"".join(
        orjson.dumps({"id": item_id, "problem": prompt, "answer": ref}) + b"\n"
        for item_id, prompt, ref in rows
    )
    return Response(body, media_type="application/x-ndjson")
