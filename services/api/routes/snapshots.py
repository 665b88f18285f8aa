"""/v1/snapshots: create (201 inline, 202 when queued), list, get, delete, export, card."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from cgd.curation.export import check_mode_for
from cgd.curation.hub import LICENSE_RE
from cgd.datasets.errors import DatasetNotFound
from cgd.enums import CardFormat, ExportFormat, ExportLayout, ExportMode, ParquetCompression, Split
from cgd.errors import InvalidRequest, NotFound
from cgd.pagination import Page
from cgd.quotas import QuotaExceeded, check_new_snapshot
from cgd.security.names import content_disposition
from cgd.snapshots import ops
from cgd.snapshots.errors import (
    JobUnfinished,
    ModeUnavailable,
    SnapshotInUse,
    SnapshotNotFound,
    SnapshotNotReady,
)
from cgd.snapshots.schemas import CardOut, CurationSpec, SnapshotDetail, SnapshotOut
from services.api.deps import SessionDep, SettingsDep, TeamDep
from services.api.errors import JSONBody, error_responses

router = APIRouter(prefix="/v1/snapshots", tags=["snapshots"])


@router.post(
    "",
    status_code=201,
    response_model=SnapshotOut,
    responses={
        202: {
            "description": "Accepted: a large snapshot is being built on the curation queue",
            "model": SnapshotOut,
        },
        **error_responses(NotFound, DatasetNotFound, InvalidRequest, JobUnfinished, QuotaExceeded),
    },
)
def create_snapshot(
    request: Request,
    spec: CurationSpec,
    session: SessionDep,
    team_id: TeamDep,
    settings: SettingsDep,
) -> JSONBody:
    """Curate finished jobs' triplets (filters, dedup, decontamination, split) into an
    immutable snapshot. Small snapshots are built inside the request (201); larger ones on the
    curation queue (202 at once; poll ``GET /v1/snapshots/{id}`` until ``status`` is
    ``ready``)."""
    check_new_snapshot(session, team_id, settings)
    snap, messages = ops.create(session, team_id, spec, settings.snapshot_inline_max)
    request.state.outbox.extend(messages)
    return JSONBody(snap.model_dump(mode="json"), status_code=202 if messages else 201)


@router.get("", response_model=Page[SnapshotOut], responses=error_responses(InvalidRequest))
def list_snapshots(
    session: SessionDep,
    team_id: TeamDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Page[SnapshotOut]:
    """The team's snapshots, newest first."""
    return ops.list_snapshots(session, team_id, limit, cursor)


@router.get(
    "/{snapshot_id}", response_model=SnapshotDetail, responses=error_responses(SnapshotNotFound)
)
def get_snapshot(session: SessionDep, team_id: TeamDep, snapshot_id: uuid.UUID) -> SnapshotDetail:
    """One snapshot with its stats, lineage and samples of what each filter dropped."""
    return ops.detail(ops.get_snapshot(session, team_id, snapshot_id))


@router.delete(
    "/{snapshot_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(SnapshotNotFound, SnapshotInUse),
)
def delete_snapshot(session: SessionDep, team_id: TeamDep, snapshot_id: uuid.UUID) -> Response:
    """Delete a snapshot (409 while training runs use it)."""
    ops.delete_snapshot(session, ops.get_snapshot(session, team_id, snapshot_id))
    return Response(status_code=204)


@router.get(
    "/{snapshot_id}/card",
    response_model=CardOut,
    responses={
        200: {"content": {"text/markdown": {"schema": {"type": "string"}}}},
        **error_responses(SnapshotNotFound, SnapshotNotReady),
    },
)
def snapshot_card(
    session: SessionDep,
    team_id: TeamDep,
    snapshot_id: uuid.UUID,
    format: CardFormat = CardFormat.json,
) -> Response:
    """The dataset card: what the snapshot holds, how it was made, what each mode trains on."""
    card = ops.card_out(ops.get_snapshot(session, team_id, snapshot_id))
    if format == CardFormat.markdown:
        return Response(card.markdown, media_type="text/markdown; charset=utf-8")
    return JSONBody(card.model_dump(mode="json"))


@router.get(
    "/{snapshot_id}/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The training file, streamed",
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "application/vnd.apache.parquet": {
                    "schema": {"type": "string", "format": "binary"}
                },
            },
        },
        **error_responses(SnapshotNotFound, SnapshotNotReady, ModeUnavailable, InvalidRequest),
    },
)
def export_snapshot(
    request: Request,
    session: SessionDep,
    team_id: TeamDep,
    snapshot_id: uuid.UUID,
    format: ExportFormat = ExportFormat.jsonl,
    layout: ExportLayout = ExportLayout.native,
    mode: Annotated[
        ExportMode | None,
        Query(description="What the target is (default cgd); not for layout native"),
    ] = None,
    split: Annotated[Split, Query(description="train, validation (or val) or all")] = Split.all,
    compression: Annotated[
        ParquetCompression,
        Query(description="Parquet only: snappy (default) is read by every Parquet reader"),
    ] = ParquetCompression.snappy,
) -> StreamingResponse:
    """Stream the snapshot as a training file in a layout (native, messages, prompt-completion,
    alpaca) and a mode (what the target is: see docs/method.md)."""
    try:
        checked_mode = check_mode_for(layout, mode)
    except ValueError as exc:
        raise InvalidRequest({"field": "mode", "reason": str(exc)}) from None
    native = layout == ExportLayout.native  # native rows carry every field, and take no mode
    snap = ops.exportable(session, team_id, snapshot_id, None if native else checked_mode)
    tag = layout.value if native else f"{layout}-{checked_mode}"
    name = ops.download_name(snap, f"{tag}-{split}", format.value)
    media = "application/vnd.apache.parquet" if format == "parquet" else "application/x-ndjson"
    body = ops.stream_export(
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
            "Content-Disposition": content_disposition(name),
            "X-Content-Hash": snap.content_hash or "",
        },
    )


@router.get(
    "/{snapshot_id}/export-hub",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "A tar of the Hub folder: data/{train,validation}-*.parquet, "
            "README.md (YAML metadata + card), dataset_info.json (LLaMA-Factory)",
            "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}},
        },
        **error_responses(SnapshotNotFound, SnapshotNotReady, ModeUnavailable, InvalidRequest),
    },
)
def export_hub(
    request: Request,
    session: SessionDep,
    team_id: TeamDep,
    snapshot_id: uuid.UUID,
    mode: ExportMode = ExportMode.cgd,
    license: Annotated[
        str, Query(description="The Hub license id written to README.md", max_length=64)
    ] = "other",
) -> StreamingResponse:
    """The snapshot as a Hugging Face Hub dataset folder, in a tar (``cgd snapshots export-hub``
    unpacks it): ``datasets.load_dataset(DIR)`` loads both splits and LLaMA-Factory reads the
    ``dataset_info.json`` entries."""
    if not LICENSE_RE.match(license):
        raise InvalidRequest(
            {"field": "license", "reason": "expected a Hub license id such as mit, apache-2.0"}
        )
    snap = ops.exportable(session, team_id, snapshot_id, mode)
    name = ops.download_name(snap, f"hub-{mode}", "tar")
    body = ops.stream_hub_tar(
        request.app.state.sessionmaker, snap.id, mode=mode.value, license=license
    )
    return StreamingResponse(
        body,
        media_type="application/x-tar",
        headers={
            "Content-Disposition": content_disposition(name),
            "X-Content-Hash": snap.content_hash or "",
        },
    )
