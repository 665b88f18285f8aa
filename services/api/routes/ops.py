"""Operations: liveness, readiness (database and broker), Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import text

from services.api import metrics
from services.api.errors import JSONBody

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _check_db(request: Request) -> str:
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"


def _check_broker(request: Request) -> str:
    client = request.app.state.redis
    if client is None:
        return "embedded"
    try:
        client.ping()
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"


@router.get("/readyz", responses={503: {"description": "database or broker unreachable"}})
async def readyz(request: Request) -> JSONBody:
    checks = {
        "database": await run_in_threadpool(_check_db, request),
        "broker": await run_in_threadpool(_check_broker, request),
    }
    ok = all(v in ("ok", "embedded") for v in checks.values())
    return JSONBody(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )


@router.get("/metrics")
async def prometheus() -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
