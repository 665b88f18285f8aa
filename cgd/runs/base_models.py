"""Base models a run may train: the operator's registry (``CGD_BASE_MODELS``) and the team's own
completed runs. A request never names a path or a hub id itself; it names an entry, and the API
alone turns it into a location for the trainer.

``CGD_BASE_MODELS`` is ``name=location,...``: location a directory on the trainer host or a hub
id. A run's ``base_model`` is a registered name or ``run:<id>`` of a completed run of the caller's
team. Anything else is one and the same 422 (:func:`refused`): its text never says whether a path
exists, a run exists, or whose it is.
"""

from __future__ import annotations

import re
import uuid

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from cgd.db.models import TrainingRun
from cgd.errors import InvalidRequest
from cgd.pagination import Page, decode_cursor, page
from cgd.settings import Settings

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RUN_PREFIX = "run:"


class BaseModelOut(BaseModel):
    name: str = Field(description="What a training run's base_model names")


def registry(settings: Settings) -> dict[str, str]:
    """name -> location, in the order the operator listed them. A malformed entry raises
    ValueError (the API checks this at start, so a typo stops it instead of hiding a model)."""
    out: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in settings.base_models.split(","))):
        name, sep, location = (part.strip() for part in entry.partition("="))
        if not sep or not location or not NAME_RE.fullmatch(name):
            raise ValueError(
                f"CGD_BASE_MODELS entry {entry!r}: write name=location, name matching "
                f"{NAME_RE.pattern}"
            )
        if name in out:
            raise ValueError(f"CGD_BASE_MODELS names {name!r} twice")
        out[name] = location
    return out


def refused() -> InvalidRequest:
    """The one answer for every base_model that is not allowed (same body whatever the cause)."""
    return InvalidRequest(
        {
            "field": "base_model",
            "reason": "not a registered base model (GET /v1/models) or run:<id> of a completed "
            "run of your team",
        }
    )


def resolve(session: Session, team_id: uuid.UUID, base_model: str, settings: Settings) -> str:
    """The location the trainer loads for ``base_model``, or :func:`refused`."""
    if base_model.startswith(RUN_PREFIX):
        try:
            run_id = uuid.UUID(base_model.removeprefix(RUN_PREFIX))
        except ValueError:
            raise refused() from None
        run = session.get(TrainingRun, run_id)
        path = (run.artifacts or {}).get("model_path") if run is not None else None
        if run is None or run.team_id != team_id or run.status != "completed" or not path:
            raise refused()
        return str(path)
    location = registry(settings).get(base_model)
    if location is None:
        raise refused()
    return location


def list_models(settings: Settings, limit: int, cursor: str | None) -> Page[BaseModelOut]:
    """Registered names in name order; the cursor carries the last name returned."""
    after = decode_cursor(cursor, (str,))
    names = sorted(registry(settings))
    if after is not None:
        names = [n for n in names if n > after[0]]
    return page(names[: limit + 1], limit, lambda n: (n,), lambda n: BaseModelOut(name=n))
