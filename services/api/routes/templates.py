"""/v1/templates: create (201), new version (PUT), list, get. Team templates are sandboxed Jinja
(see cgd.templates.core); jobs name them in ``"template"`` and pin the version at creation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from cgd.errors import Conflict, InvalidRequest
from cgd.pagination import Page
from cgd.quotas import QuotaExceeded, check_new_template_version
from cgd.templates import ops
from cgd.templates.errors import InvalidTemplate, TemplateExists, TemplateNotFound
from cgd.templates.schemas import TemplateBody, TemplateIn, TemplateOut
from services.api.deps import SessionDep, SettingsDep, TeamDep
from services.api.errors import error_responses

router = APIRouter(prefix="/v1/templates", tags=["templates"])


@router.post(
    "",
    status_code=201,
    response_model=TemplateOut,
    responses=error_responses(InvalidTemplate, TemplateExists, QuotaExceeded),
)
def create_template(
    body: TemplateIn, session: SessionDep, team_id: TeamDep, settings: SettingsDep
) -> TemplateOut:
    """Create a team template (version 1). Every part is rendered with sample values first: a
    part that uses an unknown variable, a construct outside the allowed subset, or a critique
    request that does not ask for the verdict line is a 422 naming the part."""
    check_new_template_version(session, team_id, settings)
    return ops.create(session, team_id, body)


@router.put(
    "/{name}",
    response_model=TemplateOut,
    responses=error_responses(InvalidTemplate, TemplateNotFound, Conflict, QuotaExceeded),
)
def update_template(
    name: str, body: TemplateBody, session: SessionDep, team_id: TeamDep, settings: SettingsDep
) -> TemplateOut:
    """Add the next version of a team template. Earlier versions stay: jobs that pinned them
    keep sending exactly what they sent."""
    check_new_template_version(session, team_id, settings)
    return ops.update(session, team_id, name, body)


@router.get("", response_model=Page[TemplateOut], responses=error_responses(InvalidRequest))
def list_templates(
    session: SessionDep,
    team_id: TeamDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Page[TemplateOut]:
    """The built-in templates and the latest version of each team template, by name."""
    return ops.list_templates(session, team_id, limit, cursor)


@router.get("/{name}", response_model=TemplateOut, responses=error_responses(TemplateNotFound))
def get_template(
    name: str,
    session: SessionDep,
    team_id: TeamDep,
    version: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="Default: the latest")
    ] = None,
) -> TemplateOut:
    """One template: a built-in or a version of the team's own."""
    return ops.get(session, team_id, name, version)
