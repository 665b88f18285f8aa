"""/v1/snapshots: create (201 inline, 202 when queued), list, get, delete, export, card."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from cgd import snapshots as svc
from cgd.curation.filters import CurationSpec
from cgd.db.models import Snapshot, utcnow
from cgd.db.queries import team_newest_first
from cgd.errors import InvalidRequest, NotFound, Unauthorized
from services.api.deps import SessionDep, SettingsDep, TeamDep
from services.api.errors import JSONBody, error_responses
from services.api.pagination import (
    created_page,
    decode_created_cursor,
)
from services.api.schemas import Page

router = APIRouter(prefix="/v1/snapshots", tags=["snapshots"])


def _out(snap: Any) -> dict[str, Any]:
    return {
        "id": str(snap.id),
        "name": snap.name,
        "status": snap.status,
        "job_ids": snap.job_ids,
        "num_items": snap.num_items,
        "stats": snap.stats,
        "content_hash": snap.content_hash,
        "spec": snap.spec,
        "lineage": snap.lineage,
        "error": snap.error,
        "created_at": snap.created_at,
        "finished_at": snap.finished_at,
    }


@router.post(
    "",
    status_code=201,
    responses={
        202: {"description": "Accepted: a large snapshot is being built on the curation queue"},
        **error_responses(Unauthorized, NotFound, InvalidRequest),
    },
)
def create_snapshot(
    request: Request,
    spec: CurationSpec,
    session: SessionDep,
    team_id: TeamDep,
    settings: SettingsDep,
) -> Response:
    """Small snapshots are built inside the request (201); larger ones on the curation queue
    (202 at once; poll ``GET /v1/snapshots/{id}`` until ``status`` is ``ready``)."""
    jobs = svc.validate_inputs(session, team_id, spec)
    snap = svc.new_snapshot(session, team_id, spec)
    if svc.input_size(session, jobs) > settings.snapshot_inline_max:
        snap.build_enqueued_at = utcnow()
        request.state.outbox.append(("cgd.curation.build_snapshot", [str(snap.id)], "curation"))
        return JSONBody(_out(snap), status_code=202)
    svc.build(session, snap.id)
    return JSONBody(_out(snap), status_code=201)


@router.get("", response_model=Page[dict[str, Any]], responses=error_responses(Unauthorized))
def list_snapshots(
    session: SessionDep,
    team_id: TeamDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Page[dict[str, Any]]:
    rows = team_newest_first(session, Snapshot, team_id, limit + 1, decode_created_cursor(cursor))
    return created_page(rows, limit, _out)


@router.get("/{snapshot_id}", responses=error_responses(Unauthorized, svc.SnapshotNotFound))
def get_snapshot(session: SessionDep, team_id: TeamDep, snapshot_id: uuid.UUID) -> dict[str, Any]:
    snap = svc.get_snapshot(session, team_id, snapshot_id)
    out = _out(snap)
    out["dropped"] = snap.dropped
    return out


@router.delete(
    "/{snapshot_id}",
    status_code=204,
    responses=error_responses(Unauthorized, svc.SnapshotNotFound, svc.SnapshotInUse),
)
def delete_snapshot(session: SessionDep, team_id: TeamDep, snapshot_id: uuid.UUID) -> Response:
    svc.delete_snapshot(session, svc.get_snapshot(session, team_id, snapshot_id))
    return Response(status_code=204)


@router.get(
    "/{snapshot_id}/card",
    responses=error_responses(Unauthorized, svc.SnapshotNotFound, svc.SnapshotNotReady),
)
def snapshot_card(
    session: SessionDep,
    team_id: TeamDep,
    snapshot_id: uuid.UUID,
    format: Literal["json", "markdown"] = "json",
) -> Response:
    data, markdown = svc.card(svc.get_snapshot(session, team_id, snapshot_id))
    if format == "markdown":
        return Response(markdown, media_type="text/markdown; charset=utf-8")
    return JSONBody({**data, "markdown": markdown})


@router.get(
    "/{snapshot_id}/export",
    responses={
        200: {"content": {"application/x-ndjson": {}, "application/vnd.apache.parquet": {}}},
        **error_responses(Unauthorized, svc.SnapshotNotFound, svc.SnapshotNotReady),
    },
)
def export_snapshot(
    request: Request,
    session: SessionDep,
    team_id: TeamDep,
    snapshot_id: uuid.UUID,
    format: Literal["jsonl", "parquet"] = "jsonl",
    layout: Literal["native", "messages", "prompt-completion", "alpaca"] = "native",
    mode: Literal["cgd", "sft", "distill", "cft", "no-critique"] = "cgd",
    split: Literal["train", "val", "all"] = "all",
    compression: Annotated[
        Literal["snappy", "lz4", "zstd", "none"],
        Query(description="Parquet only: snappy (default) is read by every Parquet reader"),
    ] = "snappy",
) -> StreamingResponse:
    snap = svc.get_snapshot(session, team_id, snapshot_id)
    if snap.status != "ready":
        raise svc.SnapshotNotReady({"snapshot_id": str(snap.id), "status": snap.status})
    name = f"{(snap.name or 'snapshot').replace('/', '_')}-{layout}-{mode}-{split}.{format}"
    media = "application/vnd.apache.parquet" if format == "parquet" else "application/x-ndjson"
    body = svc.stream_export(
        request.app.state.sessionmaker,
        snap.id,
        format=format,
        layout=layout,
        mode=mode,
        split=split,
        compression=compression,
    )
    return StreamingResponse(
        body,
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Hash": snap.content_hash or "",
        },
    )
