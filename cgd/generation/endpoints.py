"""Checks on a job's endpoint configuration beyond its field types: the URL policy
(:mod:`cgd.security.urls`) and the shape of ``extra``, which is sent inside every request."""

from __future__ import annotations

from typing import Any

import orjson

from cgd.errors import InvalidRequest
from cgd.llm.endpoint import EndpointConfig
from cgd.security.urls import UrlRefused, check_url

MAX_EXTRA_DEPTH = 8
MAX_EXTRA_BYTES = 16 * 1024
MAX_MODEL_CHARS = 500


def check_endpoint(cfg: EndpointConfig, role: str, allowlist: str) -> None:
    try:
        check_url(cfg.base_url, allowlist)
    except UrlRefused as exc:
        raise InvalidRequest({"field": f"{role}.base_url", "reason": str(exc)}) from None
    if not cfg.model or len(cfg.model) > MAX_MODEL_CHARS or "\x00" in cfg.model:
        raise InvalidRequest(
            {
                "field": f"{role}.model",
                "reason": f"must be 1 to {MAX_MODEL_CHARS} characters, no NUL",
            }
        )
    depth = _depth(cfg.extra)
    if depth > MAX_EXTRA_DEPTH:
        raise InvalidRequest(
            {"field": f"{role}.extra", "reason": f"nested deeper than {MAX_EXTRA_DEPTH} levels"}
        )
    try:
        size = len(orjson.dumps(cfg.extra))
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise InvalidRequest({"field": f"{role}.extra", "reason": f"not JSON: {exc}"}) from None
    if size > MAX_EXTRA_BYTES:
        raise InvalidRequest(
            {"field": f"{role}.extra", "reason": f"larger than {MAX_EXTRA_BYTES} bytes as JSON"}
        )


def _depth(value: Any) -> int:
    """Nesting depth without recursion (a 10,000-deep value must not blow the stack)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if deepest > MAX_EXTRA_DEPTH:
                return deepest
            children = node.values() if isinstance(node, dict) else node
            stack.extend((c, depth + 1) for c in children)
    return deepest
