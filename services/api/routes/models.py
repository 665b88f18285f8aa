"""/v1/models: the base models training runs may name (the operator's CGD_BASE_MODELS)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from cgd.pagination import Page
from cgd.runs.base_models import BaseModelOut, list_models
from services.api.deps import SettingsDep, TeamDep
from services.api.errors import error_responses

router = APIRouter(prefix="/v1/models", tags=["training runs"])


@router.get("", response_model=Page[BaseModelOut], responses=error_responses())
def list_base_models(
    settings: SettingsDep,
    _team: TeamDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Page[BaseModelOut]:
    """Registered base models by name; a training run's ``base_model`` is one of these or
    ``run:<id>`` of a completed run of your team."""
    return list_models(settings, limit, cursor)
