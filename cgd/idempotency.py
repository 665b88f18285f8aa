"""Idempotency-Key: the same key and request body create one resource; another body is a 409."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, TypeVar, cast

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from cgd.errors import IdempotencyKeyReused

T = TypeVar("T")


def request_hash(body: dict[str, Any]) -> str:
    """What makes two requests "the same request": a hash of their canonical JSON."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def find_replay(
    session: Session, model: type[T], team_id: uuid.UUID, key: str | None, req_hash: str
) -> T | None:
    """The resource an earlier identical request created under ``key``, or None."""
    if key is None:
        return None
    m: Any = model
    existing: Any = session.scalar(
        select(model).where(m.team_id == team_id, m.idempotency_key == key)
    )
    if existing is not None and existing.request_hash != req_hash:
        raise IdempotencyKeyReused(
            {"reason": "Idempotency-Key was already used with a different request body"}
        )
    return cast(T | None, existing)
