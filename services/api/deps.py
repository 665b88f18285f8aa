"""Request dependencies as ``Annotated`` aliases."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from cgd.auth import authenticate, team_from_cache
from cgd.db.engine import session_scope
from cgd.settings import Settings

# Documents the scheme (an Authorize button in /docs); the key itself is checked by get_team,
# which answers our own 401 body rather than FastAPI's 403.
bearer_scheme = HTTPBearer(auto_error=False, description="An API key from `cgd admin create-key`")


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_session(request: Request) -> Iterator[Session]:
    """The request's unit of work: commits when the handler succeeds, rolls back otherwise.

    Task messages the handler queued in ``request.state.outbox`` are sent only after the
    commit, so a worker always finds the rows a message names.
    """
    request.state.outbox = []
    with session_scope(request.app.state.sessionmaker) as session:
        yield session
    send_outbox(request)


def send_outbox(request: Request) -> None:
    messages = request.state.outbox
    if not messages:
        return
    try:
        request.app.state.send(messages)
    except Exception as exc:
        # The rows are committed; the worker's sweeper enqueues work whose message never came.
        log.warning("could not enqueue %d task(s) now (%s); the sweeper will", len(messages), exc)


log = logging.getLogger("cgd.api")

SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
# scope="function": commit before the response is sent, so a 2xx always means committed.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_team(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> uuid.UUID:
    """The caller's team. A recently seen key is checked on the event loop without a thread
    hop or a query (status polling is most of the traffic); otherwise in a worker thread."""
    cache = request.app.state.key_cache
    cached = team_from_cache(cache, authorization)
    if cached is not None:
        return cached
    return await run_in_threadpool(_authenticate, request, authorization)


def _authenticate(request: Request, authorization: str | None) -> uuid.UUID:
    # Its own short session: a long upload must not hold a connection idle in a transaction.
    session: Session = request.app.state.sessionmaker()
    try:
        return authenticate(session, authorization, request.app.state.key_cache)
    finally:
        session.close()


TeamDep = Annotated[uuid.UUID, Depends(get_team)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        max_length=200,
        description="Repeat a create with the same key and body: you get the first result back",
    ),
]
