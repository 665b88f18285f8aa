"""One error hierarchy for the whole project.

Every error carries the HTTP status it maps to and a JSON-able ``detail``; the API renders them as
``{"error": <class name>, "detail": ...}``. Domain code raises these; only the API knows HTTP.
"""

from __future__ import annotations

from typing import Any


class CgdError(Exception):
    status_code: int = 400

    def __init__(self, detail: Any = None) -> None:
        self.detail = detail if detail is not None else self.default_detail()
        super().__init__(str(self.detail))

    @classmethod
    def default_detail(cls) -> Any:
        return (cls.__doc__ or cls.__name__).strip().splitlines()[0]

    @property
    def kind(self) -> str:
        return type(self).__name__


class Unauthorized(CgdError):
    """Missing or invalid API key."""

    status_code = 401


class NotFound(CgdError):
    """The resource does not exist (or belongs to another team)."""

    status_code = 404


class DatasetNotFound(NotFound):
    """Dataset not found."""


class InvalidRequest(CgdError):
    """The request is malformed."""

    status_code = 422


class InvalidDataset(CgdError):
    """The uploaded file is not a valid dataset; ``detail`` names the line and the reason."""

    status_code = 422

    def __init__(self, reason: str, line: int | None = None, field: str | None = None) -> None:
        detail: dict[str, Any] = {"line": line, "reason": reason}
        if field is not None:
            detail["field"] = field
        super().__init__(detail)


class PayloadTooLarge(CgdError):
    """The upload is over the size limit."""

    status_code = 413


class Conflict(CgdError):
    """The request conflicts with the current state of the resource."""

    status_code = 409


class IdempotencyKeyReused(Conflict):
    """The Idempotency-Key was already used with a different request body."""


class ServiceUnavailable(CgdError):
    """A backing service (database or broker) is unreachable."""

    status_code = 503
