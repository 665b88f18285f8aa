"""Opaque cursors: base64url of a small JSON list. Bad cursors are a 422, never a 500."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from cgd.errors import InvalidRequest


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
