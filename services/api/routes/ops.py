"""Operations: liveness, readiness (database and broker), Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text

from cgd.errors import Unauthorized
from services.api import metrics
from services.api.deps import SettingsDep
from services.api.errors import JSONBody, error_responses

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}
        }
    )

    status: str
    checks: dict[str, str]


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


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


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"description": "database or broker unreachable", "model": Readiness}},
)
async def readyz(request: Request) -> JSONBody:
    """Readiness: the database and the broker are reachable."""
    checks = {
        "database": await run_in_threadpool(_check_db, request),
        "broker": await run_in_threadpool(_check_broker, request),
    }
    ok = all(v in ("ok", "embedded") for v in checks.values())
    return JSONBody(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        **error_responses(Unauthorized, metrics.MetricsForbidden),
        200: {
            "content": {
                "text/plain": {
                    "schema": {"type": "string"},
                    "example": "# TYPE cgd_dataset_rows_ingested_total counter\n"
                    "cgd_dataset_rows_ingested_total 200.0\n",
                }
            }
        },
    },
)
def prometheus(
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """Prometheus metrics (text exposition format), for a scraper holding
    ``Authorization: Bearer <CGD_METRICS_TOKEN>`` only. A plain ``def``: the job-item and queue
    gauges may query the database and Redis (at most once per cache period), off the loop."""
    metrics.check_scraper(settings, authorization)
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
