"""Queries shared by every team-owned resource."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

T = TypeVar("T")


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
