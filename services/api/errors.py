"""One handler renders every error as ``{"error": <kind>, "detail": ...}``."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from cgd.errors import CgdError

log = logging.getLogger("cgd.api")


class JSONBody(Response):
    """JSON via orjson (error bodies and hand-built responses)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str)


class ErrorBody(BaseModel):
    error: str
    detail: Any = None


def error_responses(*errors: type[CgdError]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route, so the OpenAPI document lists what it can answer."""
    out: dict[int | str, dict[str, Any]] = {}
    for err in (*errors,):
        entry = out.setdefault(err.status_code, {"model": ErrorBody, "description": ""})
        names = [n for n in entry["description"].split(", ") if n]
        entry["description"] = ", ".join([*names, err.__name__])
    return out


def _render(status: int, kind: str, detail: Any) -> JSONBody:
    return JSONBody({"error": kind, "detail": detail}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CgdError)
    async def _cgd(_: Request, exc: CgdError) -> JSONBody:
        return _render(exc.status_code, exc.kind, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONBody:
        detail = [
            {"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()
        ]
        return _render(422, "InvalidRequest", detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONBody:
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        return _render(exc.status_code, kind, exc.detail)

    @app.exception_handler(OperationalError)
    async def _db_down(_: Request, exc: OperationalError) -> JSONBody:
        log.warning("database unavailable: %s", type(exc.orig).__name__)
        return _render(503, "ServiceUnavailable", "the database is unavailable; retry later")

    @app.exception_handler(DBAPIError)
    async def _db_error(_: Request, exc: DBAPIError) -> JSONBody:
        if exc.connection_invalidated:
            return _render(503, "ServiceUnavailable", "the database is unavailable; retry later")
        log.exception("database error")
        return _render(500, "InternalError", "internal error")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONBody:
        log.exception("unhandled error")
        return _render(500, "InternalError", "internal error")
