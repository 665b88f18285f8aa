"""/v1/datasets: upload (streamed, all-or-nothing), list, get, items, delete."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError

from cgd import datasets as svc
from cgd.db.engine import session_scope
from cgd.db.models import Dataset
from cgd.db.queries import team_newest_first
from cgd.errors import (
    DatasetNotFound,
    IdempotencyKeyReused,
    InvalidDataset,
    InvalidRequest,
    PayloadTooLarge,
    Unauthorized,
)
from cgd.ingest import Limits
from cgd.settings import Settings
from services.api.deps import SessionDep, SettingsDep, TeamDep
from services.api.errors import error_responses
from services.api.pagination import (
    created_page,
    decode_created_cursor,
    decode_cursor,
    encode_cursor,
)
from services.api.schemas import DatasetOut, ItemOut, Page
from services.api.upload import spool_multipart

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
_FORM_FIELDS = ("name", "prompt_field", "reference_field", "response_field", "id_field")
UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        **{f: {"type": "string"} for f in _FORM_FIELDS},
                    },
                }
            }
        },
    }
}


def _limits(settings: Settings) -> Limits:
    return Limits(
        max_line_bytes=settings.max_line_bytes,
        max_json_depth=settings.max_json_depth,
        max_parquet_columns=settings.max_parquet_columns,
        max_parquet_row_group_bytes=settings.max_parquet_row_group_bytes,
    )


@router.post(
    "",
    status_code=201,
    response_model=DatasetOut,
    openapi_extra=UPLOAD_DOC,
    responses=error_responses(
        Unauthorized, InvalidDataset, InvalidRequest, PayloadTooLarge, IdempotencyKeyReused
    ),
)
async def create_dataset(
    request: Request,
    team_id: TeamDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> DatasetOut:
    form = await spool_multipart(request, settings.max_upload_bytes, settings.upload_tmp_dir)
    try:
        if form.upload is None:
            raise InvalidRequest({"field": "file", "reason": "missing 'file' part"})
        params = svc.DatasetParams(**{k: form.fields.get(k) or None for k in _FORM_FIELDS})
        return await run_in_threadpool(
            _ingest, request, team_id, form.upload, params, _limits(settings), idempotency_key
        )
    finally:
        form.cleanup()


def _ingest(
    request: Request,
    team_id: uuid.UUID,
    upload: svc.Upload,
    params: svc.DatasetParams,
    limits: Limits,
    idempotency_key: str | None,
) -> DatasetOut:
    """Runs in a worker thread; this is the request boundary, so it commits."""
    factory = request.app.state.sessionmaker
    req_hash = svc.request_hash(upload, params)
    try:
        with session_scope(factory) as session:
            replay = svc.find_replay(session, team_id, idempotency_key, req_hash)
            if replay is not None:
                return DatasetOut.model_validate(replay)
            dataset = svc.create_dataset(session, team_id, upload, params, limits, idempotency_key)
            out = DatasetOut.model_validate(dataset)
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key committed first.
        if idempotency_key is None:
            raise
        with session_scope(factory) as session:
            replay = svc.find_replay(session, team_id, idempotency_key, req_hash)
            if replay is None:
                raise
            return DatasetOut.model_validate(replay)
    return out


@router.get("", response_model=Page[DatasetOut], responses=error_responses(Unauthorized))
def list_datasets(
    session: SessionDep,
    team_id: TeamDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Page[DatasetOut]:
    rows = team_newest_first(session, Dataset, team_id, limit + 1, decode_created_cursor(cursor))
    return created_page(rows, limit, DatasetOut.model_validate)


@router.get(
    "/{dataset_id}",
    response_model=DatasetOut,
    responses=error_responses(Unauthorized, DatasetNotFound),
)
def get_dataset(session: SessionDep, team_id: TeamDep, dataset_id: uuid.UUID) -> DatasetOut:
    return DatasetOut.model_validate(svc.get_dataset(session, team_id, dataset_id))


@router.get(
    "/{dataset_id}/items",
    response_model=Page[ItemOut],
    responses=error_responses(Unauthorized, DatasetNotFound, InvalidRequest),
)
def list_items(
    session: SessionDep,
    team_id: TeamDep,
    dataset_id: uuid.UUID,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Page[ItemOut]:
    dataset = svc.get_dataset(session, team_id, dataset_id)
    after = decode_cursor(cursor, 1)
    if after is not None and not isinstance(after[0], int):
        raise InvalidRequest({"field": "cursor", "reason": "invalid cursor"})
    rows = svc.list_items(session, dataset.id, limit + 1, after[0] if after else None)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[ItemOut](
        data=[ItemOut.model_validate(r) for r in rows],
        next_cursor=encode_cursor(rows[-1].idx) if more else None,
    )


@router.delete(
    "/{dataset_id}",
    status_code=204,
    responses=error_responses(Unauthorized, DatasetNotFound, svc.DatasetInUse),
)
def delete_dataset(session: SessionDep, team_id: TeamDep, dataset_id: uuid.UUID) -> Response:
    svc.delete_dataset(session, team_id, dataset_id)
    return Response(status_code=204)
