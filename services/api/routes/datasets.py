"""/v1/datasets: upload (streamed, all-or-nothing), list, get, items, delete."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from cgd.datasets import ops
from cgd.datasets.errors import DatasetInUse, DatasetNotFound, InvalidDataset
from cgd.datasets.ingest import Limits
from cgd.datasets.schemas import FORM_FIELDS, DatasetOut, DatasetParams, ItemOut
from cgd.db.engine import session_scope
from cgd.errors import IdempotencyKeyReused, InvalidRequest, PayloadTooLarge
from cgd.pagination import Page
from cgd.quotas import QuotaExceeded, check_new_dataset
from cgd.settings import Settings
from services.api.deps import IdempotencyKey, SessionDep, SettingsDep, TeamDep
from services.api.errors import error_responses
from services.api.upload import spool_multipart

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": ".jsonl, .jsonl.gz, .json (array), .csv or .parquet",
                        },
                        **{f: {"type": "string"} for f in FORM_FIELDS},
                    },
                },
                "example": {"name": "gsm8k-200", "prompt_field": "question"},
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
        max_items=settings.max_dataset_items,
        max_decompressed_bytes=settings.max_decompressed_bytes,
    )


@router.post(
    "",
    status_code=201,
    response_model=DatasetOut,
    openapi_extra=UPLOAD_DOC,
    responses=error_responses(
        InvalidDataset, InvalidRequest, PayloadTooLarge, IdempotencyKeyReused, QuotaExceeded
    ),
)
async def create_dataset(
    request: Request,
    team_id: TeamDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> DatasetOut:
    """Upload a prompt file (multipart ``file``, optional field mapping). All-or-nothing: a bad
    row answers 422 naming its line and no dataset is created."""
    form = await spool_multipart(request, settings.max_upload_bytes, settings.upload_tmp_dir)
    try:
        if form.upload is None:
            raise InvalidRequest({"field": "file", "reason": "missing 'file' part"})
        params = DatasetParams(**{k: form.fields.get(k) or None for k in FORM_FIELDS})
        await run_in_threadpool(_check_quota, request, team_id, form.upload.size_bytes, settings)
        return await run_in_threadpool(
            ops.create,
            request.app.state.sessionmaker,
            team_id,
            form.upload,
            params,
            _limits(settings),
            idempotency_key,
        )
    finally:
        form.cleanup()


def _check_quota(request: Request, team_id: uuid.UUID, size_bytes: int, settings: Settings) -> None:
    # Its own short transaction before the (long) ingest: a team over its quota costs no parse.
    # Two uploads of one team at the same moment may both pass and overshoot by one dataset.
    with session_scope(request.app.state.sessionmaker) as session:
        check_new_dataset(session, team_id, size_bytes, settings)


@router.get("", response_model=Page[DatasetOut], responses=error_responses(InvalidRequest))
def list_datasets(
    session: SessionDep,
    team_id: TeamDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Page[DatasetOut]:
    """The team's datasets, newest first."""
    return ops.list_datasets(session, team_id, limit, cursor)


@router.get("/{dataset_id}", response_model=DatasetOut, responses=error_responses(DatasetNotFound))
def get_dataset(session: SessionDep, team_id: TeamDep, dataset_id: uuid.UUID) -> DatasetOut:
    """One dataset: its field mapping, size, content hash and stats."""
    return DatasetOut.model_validate(ops.get_dataset(session, team_id, dataset_id))


@router.get(
    "/{dataset_id}/items",
    response_model=Page[ItemOut],
    responses=error_responses(DatasetNotFound, InvalidRequest),
)
def list_items(
    session: SessionDep,
    team_id: TeamDep,
    dataset_id: uuid.UUID,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Page[ItemOut]:
    """The dataset's items in file order."""
    return ops.list_items(session, team_id, dataset_id, limit, cursor)


@router.delete(
    "/{dataset_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(DatasetNotFound, DatasetInUse),
)
def delete_dataset(session: SessionDep, team_id: TeamDep, dataset_id: uuid.UUID) -> Response:
    """Delete a dataset and its items (409 while jobs use it)."""
    ops.delete_dataset(session, team_id, dataset_id)
    return Response(status_code=204)
