"""Preflight: before a job is accepted, each endpoint must answer ``GET {base_url}/models``
within a few seconds and list (or, asked by name, know) the model. Otherwise the job is refused
with a 422 that names the URL, what it answered, the models it serves and a hint, instead of
being accepted and failing every item later. ``"preflight": false`` in the spec skips it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson

from cgd.errors import InvalidRequest
from cgd.generation.spec import JobSpec
from cgd.llm_client import EndpointConfig, safe_url
from cgd.outbound import OutboundRefused, ResponseTooLarge, SyncOutbound, UrlGuard, describe


def check(spec: JobSpec, timeout_s: float, guard: UrlGuard | None) -> None:
    """Raise :class:`InvalidRequest` for the first endpoint that fails its check. Every
    request goes through ``guard`` (the allow-list), without following redirects."""
    if not spec.preflight:
        return
    roles = [(r, c) for r, c in (("student", spec.student), ("teacher", spec.teacher)) if c]
    with ThreadPoolExecutor(max_workers=len(roles)) as pool:
        problems = list(pool.map(lambda rc: _check_one(rc[0], rc[1], timeout_s, guard), roles))
    for problem in problems:
        if problem is not None:
            raise InvalidRequest(problem)


def _get(client: SyncOutbound, url: str) -> tuple[int | None, Any, str]:
    """(status, parsed JSON or None, a short description of the answer)."""
    try:
        reply = client.request("GET", url)
    except OutboundRefused as exc:
        return None, None, f"not called ({exc})"
    except ResponseTooLarge:
        return None, None, "an answer over 1 MiB (not read)"
    except httpx.TimeoutException:
        return None, None, "no answer (timed out)"
    except httpx.HTTPError as exc:
        return None, None, f"no answer ({type(exc).__name__}: connection failed)"
    try:
        data = orjson.loads(reply.body) if reply.status == 200 else None
    except orjson.JSONDecodeError:
        data = None
    return reply.status, data, describe(reply)


def _model_ids(data: Any) -> list[str] | None:
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        return [str(m["id"]) for m in data["data"] if isinstance(m, dict) and "id" in m]
    return None


def _check_one(
    role: str, cfg: EndpointConfig, timeout_s: float, guard: UrlGuard | None
) -> dict[str, Any] | None:
    base = cfg.base_url.rstrip("/")
    headers = {}
    if cfg.api_key is not None:
        headers["Authorization"] = f"Bearer {cfg.api_key.get_secret_value()}"
    with SyncOutbound(guard, timeout_s, headers) as client:
        status, data, answered = _get(client, f"{base}/models")
        models = _model_ids(data) if status == 200 else None
        field = f"{role}.base_url"
        shown = safe_url(base)
        if models is None:
            problem: dict[str, Any] = {
                "field": field,
                "url": f"{shown}/models",
                "answered": answered,
                "models": [],
                "reason": f"{role} endpoint {shown} did not answer GET /models with a model list",
            }
            hint = _hint(client, base, status)
            if hint:
                problem["hint"] = hint
            return problem
        if cfg.model in models:
            return None
        # Not listed: the OpenAI protocol also answers GET /models/{id} (aliases, hosted APIs).
        by_name, _, _ = _get(client, f"{base}/models/{quote(cfg.model, safe='')}")
        if by_name == 200:
            return None
        return {
            "field": f"{role}.model",
            "url": f"{shown}/models",
            "answered": f"HTTP 200 listing {len(models)} model(s)",
            "models": models[:50],
            "reason": f"{role} model {cfg.model!r} is not served at {shown}",
            "hint": f"did you mean {models[0]!r}?" if models else "the server lists no model",
        }


def _hint(client: SyncOutbound, base: str, status: int | None) -> str | None:
    path = urlsplit(base).path.rstrip("/")
    if status is None:
        return "is the server running, and is the host and port reachable from the workers?"
    if not path.endswith("/v1"):
        s, data, _ = _get(client, f"{base}/v1/models")
        if s == 200 and _model_ids(data) is not None:
            return f"did you mean {safe_url(base)}/v1?"
        return "OpenAI-compatible base URLs usually end in /v1"
    return None
