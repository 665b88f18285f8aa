"""Cursor pagination, one helper for every listing.

A cursor is opaque to clients: base64url of a small JSON list with the sort key of the last row
returned. A bad cursor is a 422 naming the field, never a 500.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, Field

from cgd.errors import InvalidRequest

T = TypeVar("T")
R = TypeVar("R")


class Page(BaseModel, Generic[T]):
    """One page of a listing; pass ``next_cursor`` back as ``?cursor=`` for the next one."""

    data: list[T]
    next_cursor: str | None = Field(None, description="null on the last page")


def _bad_cursor() -> InvalidRequest:
    return InvalidRequest({"field": "cursor", "reason": "invalid cursor"})


def encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode().rstrip("=")


def decode_cursor(cursor: str | None, types: Sequence[type]) -> list[Any] | None:
    """The values a cursor carries, checked against ``types`` (``None``: no cursor)."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except Exception:
        raise _bad_cursor() from None
    if not isinstance(values, list) or len(values) != len(types):
        raise _bad_cursor()
    # bool is an int in Python; a cursor never carries one.
    if any(isinstance(v, bool) or not isinstance(v, t) for v, t in zip(values, types, strict=True)):
        raise _bad_cursor()
    return values


def decode_created_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The (created_at, id) a newest-first listing continues after."""
    after = decode_cursor(cursor, (str, str))
    if after is None:
        return None
    try:
        return datetime.fromisoformat(after[0]), uuid.UUID(after[1])
    except (TypeError, ValueError):
        raise _bad_cursor() from None


def page(
    rows: list[R], limit: int, key: Callable[[R], tuple[Any, ...]], render: Callable[[R], T]
) -> Page[T]:
    """A page from ``limit + 1`` rows: the extra row only says whether there is a next page;
    ``key`` gives the sort key the next page continues after."""
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(*key(rows[-1])) if more and rows else None
    return Page[T](data=[render(r) for r in rows], next_cursor=nxt)


def created_page(rows: list[Any], limit: int, render: Callable[[Any], T]) -> Page[T]:
    """A page of a newest-first listing (sort key ``(created_at, id)``)."""
    return page(rows, limit, lambda r: (r.created_at.isoformat(), str(r.id)), render)
