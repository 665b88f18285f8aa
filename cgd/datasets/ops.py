"""Dataset operations: everything between a spooled upload and committed rows, and the queries.

Functions that take a ``Session`` only ``flush()``; the caller (the request boundary) commits or
rolls back, so a bad row anywhere leaves no dataset behind. :func:`create` is the exception: it
is the transaction boundary of an upload (it runs in a worker thread, not in a request session).
"""

from __future__ import annotations

import uuid
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cgd import idempotency
from cgd.datasets.errors import DatasetInUse, DatasetNotFound, InvalidDataset
from cgd.datasets.ingest import Limits, Row, at_index, detect_format, iter_rows
from cgd.datasets.schemas import DatasetOut, DatasetParams, ItemOut, Upload
from cgd.db.bulk import DuplicateItemId, load_items
from cgd.db.engine import session_scope
from cgd.db.models import Dataset, DatasetItem, Job
from cgd.db.queries import team_newest_first, team_row
from cgd.pagination import Page, created_page, decode_created_cursor, decode_cursor, page
from cgd.security.names import MAX_FILENAME_CHARS, MAX_NAME_CHARS, check_name


def request_hash(upload: Upload, params: DatasetParams) -> str:
    """What makes two uploads "the same request" for Idempotency-Key purposes."""
    return idempotency.request_hash(
        {"content": upload.sha256, "filename": upload.filename, **params.__dict__}
    )


def find_replay(
    session: Session, team_id: uuid.UUID, key: str | None, req_hash: str
) -> Dataset | None:
    """The dataset an earlier identical request created, or None; a reused key is a 409."""
    return idempotency.find_replay(session, Dataset, team_id, key, req_hash)


def create(
    factory: sessionmaker[Session],
    team_id: uuid.UUID,
    upload: Upload,
    params: DatasetParams,
    limits: Limits,
    idempotency_key: str | None,
) -> DatasetOut:
    """Create a dataset from a spooled upload in its own transaction; an identical request with
    the same Idempotency-Key answers the dataset the first one created."""
    req_hash = request_hash(upload, params)
    try:
        with session_scope(factory) as session:
            replay = find_replay(session, team_id, idempotency_key, req_hash)
            if replay is not None:
                return DatasetOut.model_validate(replay)
            dataset = create_dataset(session, team_id, upload, params, limits, idempotency_key)
            out = DatasetOut.model_validate(dataset)
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key committed first.
        if idempotency_key is None:
            raise
        with session_scope(factory) as session:
            replay = find_replay(session, team_id, idempotency_key, req_hash)
            if replay is None:
                raise
            return DatasetOut.model_validate(replay)
    return out


def create_dataset(
    session: Session,
    team_id: uuid.UUID,
    upload: Upload,
    params: DatasetParams,
    limits: Limits,
    idempotency_key: str | None = None,
) -> Dataset:
    check_name(params.name, "name")
    check_name(upload.filename, "file", MAX_FILENAME_CHARS)  # the part's filename
    fmt = detect_format(upload.filename)
    fields = params.fields()
    dataset = Dataset(
        team_id=team_id,
        name=params.name or Path(upload.filename or "dataset").name[:MAX_NAME_CHARS],
        format=fmt,
        filename=upload.filename,
        size_bytes=upload.size_bytes,
        content_hash=upload.sha256,
        idempotency_key=idempotency_key,
        request_hash=request_hash(upload, params),
        fields={},
        stats={},
    )
    session.add(dataset)
    session.flush()
    stats = _StatsAccumulator()
    rows = stats.observe(iter_rows(upload.path, fmt, fields, limits))
    try:
        dataset.num_items = load_items(session, dataset.id, rows)
    except DuplicateItemId:
        # Only user-supplied ids can collide; find the two lines to name them.
        raise _duplicate_id_error(upload.path, fmt, params, limits) from None
    dataset.fields = fields.as_dict()
    dataset.stats = stats.result()
    session.flush()
    return dataset


def _duplicate_id_error(path: Path, fmt: str, params: DatasetParams, limits: Limits) -> Exception:
    seen: dict[str, int] = {}
    for row in iter_rows(path, fmt, params.fields(), limits):
        assert row.item_id is not None
        if row.item_id in seen:
            first = seen[row.item_id]
            where = f"index {first - 1}" if fmt == "json" else f"line {first}"
            exc = InvalidDataset(
                f"duplicate id {row.item_id!r} (first at {where})",
                line=row.line,
                field=params.id_field,
            )
            return at_index(exc) if fmt == "json" else exc
        seen[row.item_id] = row.line
    return InvalidDataset("duplicate ids", line=None, field=params.id_field)


class _StatsAccumulator:
    """Row count, prompt-length percentiles and field coverage, in O(rows) small ints."""

    def __init__(self) -> None:
        self.prompt_chars = array("l")
        self.with_reference = 0
        self.with_response = 0
        self.with_solution = 0

    def observe(self, rows: Iterator[Row]) -> Iterator[Row]:
        for row in rows:
            self.prompt_chars.append(len(row.prompt))
            self.with_reference += row.reference is not None
            self.with_response += row.response is not None
            self.with_solution += row.solution is not None
            yield row

    def result(self) -> dict[str, Any]:
        n = len(self.prompt_chars)
        lengths = sorted(self.prompt_chars)

        def pct(p: float) -> int:
            return lengths[min(n - 1, int(p * n))] if n else 0

        return {
            "rows": n,
            "prompt_chars": {
                "min": lengths[0] if n else 0,
                "p50": pct(0.5),
                "p90": pct(0.9),
                "p99": pct(0.99),
                "max": lengths[-1] if n else 0,
                "mean": round(sum(lengths) / n, 1) if n else 0,
            },
            "share_with_reference": round(self.with_reference / n, 4) if n else 0,
            "share_with_response": round(self.with_response / n, 4) if n else 0,
            "share_with_solution": round(self.with_solution / n, 4) if n else 0,
        }


def get_dataset(session: Session, team_id: uuid.UUID, dataset_id: uuid.UUID) -> Dataset:
    return team_row(session, Dataset, team_id, dataset_id, DatasetNotFound, "dataset_id")


def list_datasets(
    session: Session, team_id: uuid.UUID, limit: int, cursor: str | None
) -> Page[DatasetOut]:
    rows = team_newest_first(session, Dataset, team_id, limit + 1, decode_created_cursor(cursor))
    return created_page(rows, limit, DatasetOut.model_validate)


def list_items(
    session: Session, team_id: uuid.UUID, dataset_id: uuid.UUID, limit: int, cursor: str | None
) -> Page[ItemOut]:
    dataset = get_dataset(session, team_id, dataset_id)
    after = decode_cursor(cursor, (int,))
    q = select(DatasetItem).where(DatasetItem.dataset_id == dataset.id)
    if after is not None:
        q = q.where(DatasetItem.idx > after[0])
    rows = list(session.scalars(q.order_by(DatasetItem.idx).limit(limit + 1)))
    return page(rows, limit, lambda r: (r.idx,), ItemOut.model_validate)


def delete_dataset(session: Session, team_id: uuid.UUID, dataset_id: uuid.UUID) -> None:
    dataset = get_dataset(session, team_id, dataset_id)
    jobs = list(session.scalars(select(Job.id).where(Job.dataset_id == dataset.id).limit(10)))
    if jobs:
        raise DatasetInUse({"dataset_id": str(dataset.id), "job_ids": [str(j) for j in jobs]})
    # Items first in bulk: an ORM cascade would load every row.
    session.execute(delete(DatasetItem).where(DatasetItem.dataset_id == dataset.id))
    session.delete(dataset)
    session.flush()
