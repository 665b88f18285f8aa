"""Opaque cursors: base64url of a small JSON list. Bad cursors are a 422, never a 500."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import orjson

from cgd.errors import InvalidRequest
from services.api.schemas import Page

T = TypeVar("T")


def encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[Any] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except Exception:
        values = None
    if not isinstance(values, list) or len(values) != arity:
        raise InvalidRequest({"field": "cursor", "reason": "invalid cursor"})
    return values


def decode_created_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The (created_at, id) a newest-first listing continues after."""
    after = decode_cursor(cursor, 2)
    if after is None:
        return None
    try:
        return datetime.fromisoformat(after[0]), uuid.UUID(after[1])
    except (TypeError, ValueError):
        raise InvalidRequest({"field": "cursor", "reason": "invalid cursor"}) from None


def created_page(rows: list[Any], limit: int, render: Callable[[Any], T]) -> Page[T]:
    """A page from ``limit + 1`` rows: the extra row only says whether there is a next page."""
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(rows[-1].created_at.isoformat(), str(rows[-1].id)) if more else None
    return Page[T](data=[render(r) for r in rows], next_cursor=nxt)
