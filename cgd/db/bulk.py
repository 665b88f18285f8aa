"""Bulk loading of dataset items: Postgres COPY, with a portable executemany fallback.

The one dialect check for Postgres-only paths lives here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cgd.datasets.errors import InvalidDataset
from cgd.datasets.ingest import Row
from cgd.db.models import DatasetItem

_COLUMNS = (
    "dataset_id",
    "idx",
    "item_id",
    "line",
    "prompt",
    "reference",
    "response",
    "extra",
    "solution",
)
_BATCH = 2000


class DuplicateItemId(Exception):
    """Two rows of one upload carry the same user-supplied id."""


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def load_items(session: Session, dataset_id: uuid.UUID, rows: Iterable[Row]) -> int:
    """Insert every row inside the session's transaction; returns how many."""
    if is_postgres(session):
        return _copy_items(session, dataset_id, rows)
    return _insert_items(session, dataset_id, rows)


def _extra_json(row: Row) -> str | None:
    if row.extra is None:
        return None
    text = orjson.dumps(row.extra, default=str)
    if b"\\u0000" in text:  # Postgres JSON cannot hold NUL, nested or not
        raise InvalidDataset("a field contains a NUL character", line=row.line)
    return text.decode()


def _copy_items(session: Session, dataset_id: uuid.UUID, rows: Iterable[Row]) -> int:
    import psycopg

    conn: Any = session.connection().connection.driver_connection
    n = 0
    try:
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY dataset_items ({', '.join(_COLUMNS)}) FROM STDIN") as copy,
        ):
            for n, row in enumerate(rows, start=1):
                idx = n - 1
                item_id = row.item_id if row.item_id is not None else str(idx)
                copy.write_row(
                    (
                        dataset_id,
                        idx,
                        item_id,
                        row.line,
                        row.prompt,
                        row.reference,
                        row.response,
                        _extra_json(row),
                        row.solution,
                    )
                )
    except psycopg.errors.UniqueViolation as exc:
        raise DuplicateItemId(str(exc)) from None
    return n


def _insert_items(session: Session, dataset_id: uuid.UUID, rows: Iterable[Row]) -> int:
    batch: list[dict[str, Any]] = []
    n = 0
    for n, row in enumerate(rows, start=1):
        idx = n - 1
        batch.append(
            {
                "dataset_id": dataset_id,
                "idx": idx,
                "item_id": row.item_id if row.item_id is not None else str(idx),
                "line": row.line,
                "prompt": row.prompt,
                "reference": row.reference,
                "response": row.response,
                "extra": row.extra,
                "solution": row.solution,
            }
        )
        if len(batch) >= _BATCH:
            _flush_batch(session, batch)
    _flush_batch(session, batch)
    return n


def _flush_batch(session: Session, batch: list[dict[str, Any]]) -> None:
    if not batch:
        return
    try:
        with session.begin_nested():
            session.execute(insert(DatasetItem), batch)
    except IntegrityError as exc:
        raise DuplicateItemId(str(exc.orig)) from None
    batch.clear()


def insert_ignore(session: Session, model: type[Any], rows: list[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT DO NOTHING: the idempotent write of a result keyed by its identity."""
    if not rows:
        return
    if is_postgres(session):
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(model).on_conflict_do_nothing(), rows)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(model).on_conflict_do_nothing(), rows)
