"""Queries shared by every team-owned resource."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from cgd.errors import NotFound

T = TypeVar("T")


def team_row(
    session: Session,
    model: type[T],
    team_id: uuid.UUID,
    row_id: uuid.UUID,
    not_found: type[NotFound],
    id_field: str,
) -> T:
    """The team's row with this id; another team's row answers as if it did not exist."""
    row: Any = session.get(model, row_id)
    if row is None or row.team_id != team_id:
        raise not_found({id_field: str(row_id)})
    return cast(T, row)


def team_newest_first(
    session: Session,
    model: type[T],
    team_id: uuid.UUID,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[T]:
    """The team's rows, newest first; ``after`` is (created_at, id) of the previous page's last
    row (keyset pagination: stable while rows are added)."""
    m: Any = model
    q = select(model).where(m.team_id == team_id)
    if after is not None:
        created, last_id = after
        q = q.where((m.created_at < created) | ((m.created_at == created) & (m.id < last_id)))
    return list(session.scalars(q.order_by(m.created_at.desc(), m.id.desc()).limit(limit)))
