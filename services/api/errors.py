"""One handler renders every error as ``{"error": <kind>, "detail": {...}}``, and the OpenAPI
document says so for every 4xx (FastAPI's own validation schema is replaced)."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from cgd.errors import CgdError, InvalidRequest, Unauthorized

log = logging.getLogger("cgd.api")


class JSONBody(Response):
    """JSON via orjson (error bodies and hand-built responses)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str)


class ErrorDetail(BaseModel):
    """What went wrong: a sentence, and where (field or line) when that applies. Other keys
    name the resources involved (``job_id``, ``status``, …)."""

    model_config = ConfigDict(extra="allow")

    reason: str
    field: str | None = Field(None, description="The request field at fault (dotted path)")
    line: int | None = Field(None, description="1-based line of an uploaded file")


class ErrorBody(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "error": "InvalidRequest",
                "detail": {"reason": "Input should be a valid UUID", "field": "body.dataset_id"},
            }
        }
    )

    error: str = Field(description="The kind of error, e.g. JobNotFound or InvalidRequest")
    detail: ErrorDetail


# Every /v1 route can answer these: a missing/invalid key, and a malformed request.
COMMON_ERRORS: tuple[type[CgdError], ...] = (Unauthorized, InvalidRequest)


def error_responses(*errors: type[CgdError]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route, so the OpenAPI document lists what it can answer."""
    out: dict[int | str, dict[str, Any]] = {}
    for err in (*COMMON_ERRORS, *errors):
        entry = out.setdefault(err.status_code, {"model": ErrorBody, "description": ""})
        names = [n for n in entry["description"].split(", ") if n]
        if err.__name__ not in names:
            entry["description"] = ", ".join([*names, err.__name__])
    return out


def _render(status: int, kind: str, detail: dict[str, Any]) -> JSONBody:
    return JSONBody({"error": kind, "detail": detail}, status_code=status)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CgdError)
    async def _cgd(_: Request, exc: CgdError) -> JSONBody:
        response = _render(exc.status_code, exc.kind, exc.detail)
        response.headers.update(getattr(exc, "headers", {}))  # e.g. Retry-After with a 429
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONBody:
        errors = [{"field": _field(e["loc"]), "reason": e["msg"]} for e in exc.errors()]
        first = errors[0] if errors else {"field": None, "reason": "invalid request"}
        return _render(422, "InvalidRequest", {**first, "errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONBody:
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        return _render(exc.status_code, kind, {"reason": str(exc.detail)})

    @app.exception_handler(OperationalError)
    async def _db_down(_: Request, exc: OperationalError) -> JSONBody:
        log.warning("database unavailable: %s", type(exc.orig).__name__)
        return _render(
            503, "ServiceUnavailable", {"reason": "the database is unavailable; retry later"}
        )

    @app.exception_handler(DBAPIError)
    async def _db_error(_: Request, exc: DBAPIError) -> JSONBody:
        if exc.connection_invalidated:
            return _render(
                503, "ServiceUnavailable", {"reason": "the database is unavailable; retry later"}
            )
        log.exception("database error")
        return _render(500, "InternalError", {"reason": "internal error"})

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONBody:
        log.exception("unhandled error")
        return _render(500, "InternalError", {"reason": "internal error"})
