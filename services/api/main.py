"""The FastAPI app factory. Everything stateful is created in the lifespan and disposed after."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from cgd import __version__
from cgd.auth import KeyCache
from cgd.db.engine import make_engine, make_sessionmaker
from cgd.logs import setup_logging
from cgd.settings import Settings, get_settings
from cgd.tasks import Message
from cgd.ttl_cache import TTLCache
from services.api.body_limit import JsonBodyLimit
from services.api.errors import install_error_handlers
from services.api.metrics import MetricsMiddleware, install_state_collector, remove_collector
from services.api.openapi import DESCRIPTION, install_openapi
from services.api.param_check import storable_params
from services.api.routes import (
    datasets,
    experiments,
    jobs,
    models,
    ops,
    runs,
    snapshots,
    templates,
)
from services.api.startup import check_startup
from services.api.ui import install_ui


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Celery only sends here (the API runs no tasks); built now, never on import.
        from services.worker.celery_app import make_celery, send

        engine = make_engine(settings.effective_database_url)
        celery = make_celery(settings)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.redis = _redis_client(settings)

        def send_messages(messages: list[Message]) -> None:
            send(celery, messages)

        app.state.send = send_messages
        app.state.key_cache = KeyCache(ttl_s=settings.key_cache_ttl_s)
        # Job status is an aggregate over the job's items; polled by many clients at once it is
        # computed at most once per job per second. Entries: (team id, status body).
        # Fresh for 0.5 s; up to 5 s more for pollers that arrive while it is recomputed.
        app.state.status_cache = TTLCache[uuid.UUID, tuple[uuid.UUID, dict[str, Any]]](
            ttl_s=0.5, stale_s=5.0
        )
        app.state.status_pending = {}
        check_startup(settings, app.state.sessionmaker)
        state_metrics = install_state_collector(app.state.sessionmaker, app.state.redis)
        logging.getLogger("cgd.api").info("api started", extra={"version": __version__})
        try:
            yield
        finally:
            remove_collector(state_metrics)
            if app.state.redis is not None:
                app.state.redis.close()
            engine.dispose()

    app = FastAPI(
        title="cgd",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(storable_params)],
        # Served from shipped assets instead (services/api/openapi.py: install_docs).
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(JsonBodyLimit, max_bytes=settings.max_json_bytes)
    app.include_router(ops.router)
    app.include_router(datasets.router)
    app.include_router(jobs.router)
    app.include_router(templates.router)
    app.include_router(snapshots.router)
    app.include_router(runs.router)
    app.include_router(runs.trainer_router)
    app.include_router(models.router)
    app.include_router(experiments.router)
    install_ui(app)
    install_openapi(app)
    return app


def _redis_client(settings: Settings):  # type: ignore[no-untyped-def]
    if not settings.broker_url or not settings.broker_url.startswith(("redis://", "rediss://")):
        return None
    import redis

    return redis.Redis.from_url(settings.broker_url, socket_timeout=2, socket_connect_timeout=2)


def app_from_env() -> FastAPI:
    """uvicorn factory entry point: ``uvicorn --factory services.api.main:app_from_env``."""
    setup_logging()
    return create_app()
