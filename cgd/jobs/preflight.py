"""Preflight: before a job is accepted, each endpoint must answer ``GET {base_url}/models``
within a few seconds and list (or, asked by name, know) the model. Otherwise the job is refused
with a 422 that names the URL, what it answered, the models it serves and a hint, instead of
being accepted and failing every item later. ``"preflight": false`` in the spec skips it.
"""

from __future__ import annotations

import ssl
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from cgd.errors import InvalidRequest
from cgd.generation.spec import JobSpec
from cgd.llm_client import EndpointConfig, safe_url

_MAX_BODY = 1024**2


@cache
def tls_context() -> ssl.SSLContext:
    """One TLS context per process: building one (CA bundle load) costs ~0.1 s per client."""
    return ssl.create_default_context()


def check(spec: JobSpec, timeout_s: float) -> None:
    """Raise :class:`InvalidRequest` for the first endpoint that fails its check."""
    if not spec.preflight:
        return
    roles = [(r, c) for r, c in (("student", spec.student), ("teacher", spec.teacher)) if c]
    with ThreadPoolExecutor(max_workers=len(roles)) as pool:
        problems = list(pool.map(lambda rc: _check_one(rc[0], rc[1], timeout_s), roles))
    for problem in problems:
        if problem is not None:
            raise InvalidRequest(problem)


def _get(client: httpx.Client, url: str) -> tuple[int | None, Any, str]:
    """(status, parsed JSON or None, a short description of the answer)."""
    try:
        r = client.get(url)
    except httpx.TimeoutException:
        return None, None, "no answer (timed out)"
    except httpx.HTTPError as exc:
        return None, None, f"no answer ({type(exc).__name__}: connection failed)"
    body = r.content[:_MAX_BODY]
    try:
        data = r.json() if len(r.content) <= _MAX_BODY else None
    except ValueError:
        data = None
    text = body[:200].decode("utf-8", "replace").strip()
    return r.status_code, data, f"HTTP {r.status_code}" + (f": {text}" if text else "")


def _model_ids(data: Any) -> list[str] | None:
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        return [str(m["id"]) for m in data["data"] if isinstance(m, dict) and "id" in m]
    return None


def _check_one(role: str, cfg: EndpointConfig, timeout_s: float) -> dict[str, Any] | None:
    base = cfg.base_url.rstrip("/")
    headers = {}
    if cfg.api_key is not None:
        headers["Authorization"] = f"Bearer {cfg.api_key.get_secret_value()}"
    with httpx.Client(
        timeout=timeout_s, headers=headers, follow_redirects=False, verify=tls_context()
    ) as client:
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


def _hint(client: httpx.Client, base: str, status: int | None) -> str | None:
    path = urlsplit(base).path.rstrip("/")
    if status is None:
        return "is the server running, and is the host and port reachable from the workers?"
    if not path.endswith("/v1"):
        s, data, _ = _get(client, f"{base}/v1/models")
        if s == 200 and _model_ids(data) is not None:
            return f"did you mean {safe_url(base)}/v1?"
        return "OpenAI-compatible base URLs usually end in /v1"
    return None
