"""One error hierarchy for the whole project.

Every error carries the HTTP status it maps to and a JSON-able ``detail``; the API renders them as
``{"error": <class name>, "detail": ...}``. Domain code raises these; only the API knows HTTP.
The generic kinds live here; each resource package adds its own (``cgd.jobs.errors``, …).
"""

from __future__ import annotations

from typing import Any


class CgdError(Exception):
    """``detail`` always has one shape: an object with ``reason`` (a sentence), and ``field``,
    ``line`` or the ids involved where they apply. A string becomes ``{"reason": …}``; an object
    without a reason gets the error's own description as its reason."""

    status_code: int = 400

    def __init__(self, detail: Any = None) -> None:
        self.detail = self._shape(detail)
        super().__init__(str(self.detail))

    @classmethod
    def default_detail(cls) -> str:
        return (cls.__doc__ or cls.__name__).strip().splitlines()[0]

    @classmethod
    def _shape(cls, detail: Any) -> dict[str, Any]:
        if detail is None:
            return {"reason": cls.default_detail()}
        if isinstance(detail, dict):
            return detail if "reason" in detail else {"reason": cls.default_detail(), **detail}
        return {"reason": str(detail)}

    @property
    def kind(self) -> str:
        return type(self).__name__


class Unauthorized(CgdError):
    """Missing or invalid API key."""

    status_code = 401


class NotFound(CgdError):
    """The resource does not exist (or belongs to another team)."""

    status_code = 404


class InvalidRequest(CgdError):
    """The request is malformed."""

    status_code = 422


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
