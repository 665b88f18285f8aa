"""The client's exceptions: one class per HTTP status the API answers, all :class:`CgdApiError`.

``except NotFound`` reads better than ``if err.status == 404``, and a caller that only cares that
the API refused can still catch :class:`CgdApiError`. The body is the API's
``{"error": <kind>, "detail": {"reason", "field"?, "line"?, …}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from cgd.retry import parse_retry_after

__all__ = [
    "BadRequest",
    "CgdApiError",
    "CgdConnectionError",
    "Conflict",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "Unauthorized",
    "ValidationFailed",
    "error_from_response",
    "format_detail",
]


def format_detail(detail: Any) -> str:
    """The API's ``detail`` as one readable line (line/field/reason first when present)."""
    if detail is None:
        return ""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        return "; ".join(format_detail(d) for d in detail)
    if isinstance(detail, Mapping):
        parts: list[str] = []
        if detail.get("line") is not None:
            parts.append(f"line {detail['line']}")
        if detail.get("field") is not None:
            parts.append(f"field {detail['field']}")
        rest = {k: v for k, v in detail.items() if k not in ("line", "field", "reason")}
        where = ", ".join(parts)
        reason = detail.get("reason")
        text = f"{where}: {reason}" if where and reason else (where or str(reason or ""))
        if rest:
            extra = ", ".join(f"{k}={v}" for k, v in rest.items())
            text = f"{text} ({extra})" if text else extra
        return text
    return str(detail)


class CgdApiError(Exception):
    """An error answer from the API: HTTP ``status``, the error ``kind`` (``InvalidDataset``,
    ``JobNotFound``, …) and its ``detail`` (for ``InvalidDataset``: ``{"line", "reason"}``)."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: Any = None,
        *,
        method: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.kind = kind
        self.detail = detail
        self.method = method
        self.headers: Mapping[str, str] = headers or {}
        super().__init__(status, kind, detail)

    @property
    def line(self) -> int | None:
        """The 1-based line of a rejected upload (422 InvalidDataset), when the API names it."""
        if isinstance(self.detail, Mapping) and isinstance(self.detail.get("line"), int):
            return int(self.detail["line"])
        return None

    @property
    def field(self) -> str | None:
        """The request field at fault (a dotted path such as ``body.teacher.base_url``)."""
        if isinstance(self.detail, Mapping) and self.detail.get("field") is not None:
            return str(self.detail["field"])
        return None

    @property
    def reason(self) -> str | None:
        if isinstance(self.detail, Mapping) and self.detail.get("reason") is not None:
            return str(self.detail["reason"])
        return None

    @property
    def hint(self) -> str | None:
        """What to do about it, for people."""
        if self.status == 401:
            return "check CGD_API_KEY (or --api-key)"
        if self.status == 0:
            return "check CGD_API_URL (or --api-url) and that the API is running"
        if self.status == 404:
            return "check the id; another team's resources answer 404 too"
        if self.status == 413:
            return "the upload is over the server's size limits"
        return None

    def __str__(self) -> str:
        text = format_detail(self.detail)
        head = f"{self.status} {self.kind}" if self.status else self.kind
        return f"{head}: {text}" if text else head


class CgdConnectionError(CgdApiError):
    """The API could not be reached (refused, DNS, timeouts, dropped connection)."""

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(0, "ConnectionError", f"cannot reach {url}: {type(cause).__name__}")
        self.url = url
        self.cause = cause


class BadRequest(CgdApiError):
    """400: the request could not be read at all."""


class Unauthorized(CgdApiError):
    """401: no API key, or one that is unknown or revoked."""


class PermissionDenied(CgdApiError):
    """403: the key may not do this."""


class NotFound(CgdApiError):
    """404: no such resource in the caller's team (another team's ids answer 404 too)."""


class Conflict(CgdApiError):
    """409: the resource's state forbids it (resume a job that is not paused, an
    ``Idempotency-Key`` reused with another body, a name taken)."""


class PayloadTooLarge(CgdApiError):
    """413: over the server's size limits."""


class ValidationFailed(CgdApiError):
    """422: a field is wrong; :attr:`field` names it, :attr:`reason` says why (an upload's bad
    row: :attr:`line`). :attr:`errors` lists every ``{field, reason}`` the API reported."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        details = self.detail if isinstance(self.detail, list) else [self.detail]
        return [dict(d) for d in details if isinstance(d, Mapping)]


class RateLimited(CgdApiError):
    """429: over a quota or a rate; :attr:`retry_after` is the wait the server asked for."""

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait before trying again (``Retry-After``), when the server says."""
        return parse_retry_after(self.headers.get("retry-after"))


class ServerError(CgdApiError):
    """5xx: the API failed (after the retries a repeatable request gets)."""


class ServiceUnavailable(ServerError):
    """503: the API, its database or its broker is unavailable for now."""


_BY_STATUS: dict[int, type[CgdApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationFailed,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_class(status: int) -> type[CgdApiError]:
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else CgdApiError


def error_from_response(response: httpx.Response) -> CgdApiError:
    """The exception for an error answer (its body already read)."""
    kind, detail = f"HTTP{response.status_code}", None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and "error" in body:
        kind, detail = str(body["error"]), body.get("detail")
    else:
        detail = response.text[:500] or response.reason_phrase
    cls = error_class(response.status_code)
    return cls(
        response.status_code,
        kind,
        detail,
        method=response.request.method,
        headers=dict(response.headers),
    )
