"""Team-template operations: create, update (a new version), get, list, and resolution for jobs.

A template version is immutable. ``POST`` creates version 1, ``PUT`` adds the next one; a job
pins the version it resolved at creation (``Job.template_id``), so later updates never change
what a running or finished job sent. Functions only ``flush()``; the request boundary commits.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cgd.db.models import Job, PromptTemplate
from cgd.errors import Conflict, InvalidRequest
from cgd.pagination import Page, decode_cursor, page
from cgd.templates.builtin import BUILTIN_VERSIONS, TEMPLATES
from cgd.templates.core import Template, TemplateSourceError, TemplateSources, validate_sources
from cgd.templates.errors import InvalidTemplate, TemplateExists, TemplateNotFound
from cgd.templates.schemas import TemplateBody, TemplateIn, TemplateOut


def version_tag(name: str, version: int) -> str:
    return f"{name}@{version}"


def _validated(body: TemplateBody) -> TemplateSources:
    sources = body.sources()
    try:
        validate_sources(sources)
    except TemplateSourceError as exc:
        raise InvalidTemplate({"field": exc.part, "reason": exc.reason}) from None
    return sources


def _latest(session: Session, team_id: uuid.UUID, name: str) -> PromptTemplate | None:
    return session.scalar(
        select(PromptTemplate)
        .where(PromptTemplate.team_id == team_id, PromptTemplate.name == name)
        .order_by(PromptTemplate.version.desc())
        .limit(1)
    )


def _add_version(
    session: Session, team_id: uuid.UUID, name: str, version: int, body: TemplateBody
) -> PromptTemplate:
    row = PromptTemplate(
        team_id=team_id,
        name=name,
        version=version,
        description=body.description,
        sources=_validated(body).as_dict(),
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        # Another request added this version first (the unique key is team, name, version).
        raise Conflict(
            {"name": name, "reason": "the template changed meanwhile; send the request again"}
        ) from None
    return row


def create(session: Session, team_id: uuid.UUID, body: TemplateIn) -> TemplateOut:
    if body.name in TEMPLATES:
        raise InvalidTemplate({"field": "name", "reason": f"{body.name!r} is a built-in template"})
    if _latest(session, team_id, body.name) is not None:
        raise TemplateExists({"name": body.name})
    return out(_add_version(session, team_id, body.name, 1, body))


def update(session: Session, team_id: uuid.UUID, name: str, body: TemplateBody) -> TemplateOut:
    """A new version of the team's template (built-ins cannot be changed)."""
    latest = _latest(session, team_id, name)
    if latest is None:
        raise TemplateNotFound({"name": name})
    return out(_add_version(session, team_id, name, latest.version + 1, body))


def get(session: Session, team_id: uuid.UUID, name: str, version: int | None) -> TemplateOut:
    if name in TEMPLATES:
        if version not in (None, 1):
            raise TemplateNotFound({"name": name, "version": version})
        return builtin_out(TEMPLATES[name])
    return out(_row(session, team_id, name, version))


def _row(session: Session, team_id: uuid.UUID, name: str, version: int | None) -> PromptTemplate:
    if version is None:
        row = _latest(session, team_id, name)
    else:
        row = session.scalar(
            select(PromptTemplate).where(
                PromptTemplate.team_id == team_id,
                PromptTemplate.name == name,
                PromptTemplate.version == version,
            )
        )
    if row is None:
        raise TemplateNotFound({"name": name, "version": version})
    return row


def list_templates(
    session: Session, team_id: uuid.UUID, limit: int, cursor: str | None
) -> Page[TemplateOut]:
    """Built-ins and the latest version of each team template, by name."""
    after = decode_cursor(cursor, (str,))
    start = after[0] if after else ""
    newest = (
        select(PromptTemplate.name, func.max(PromptTemplate.version).label("v"))
        .where(PromptTemplate.team_id == team_id, PromptTemplate.name > start)
        .group_by(PromptTemplate.name)
        .order_by(PromptTemplate.name)
        .limit(limit + 1)
        .subquery()
    )
    rows = session.scalars(
        select(PromptTemplate)
        .join(
            newest,
            (PromptTemplate.name == newest.c.name) & (PromptTemplate.version == newest.c.v),
        )
        .where(PromptTemplate.team_id == team_id)
    )
    items = [out(r) for r in rows]
    items += [builtin_out(t) for n, t in TEMPLATES.items() if n > start]
    items.sort(key=lambda t: t.name)
    return page(items[: limit + 1], limit, lambda t: (t.name,), lambda t: t)


def out(row: PromptTemplate) -> TemplateOut:
    return TemplateOut(
        id=row.id,
        name=row.name,
        version=row.version,
        version_tag=version_tag(row.name, row.version),
        builtin=False,
        description=row.description,
        created_at=row.created_at,
        **row.sources,
    )


def builtin_out(t: Template) -> TemplateOut:
    return TemplateOut(
        id=None,
        name=t.name,
        version=1,
        version_tag=t.version,
        builtin=True,
        description=f"Built-in template ({t.version})",
        created_at=None,
        **t.sources.as_dict(),
    )


# --- jobs ----------------------------------------------------------------------------------------


def resolve(session: Session, team_id: uuid.UUID, ref: str) -> tuple[uuid.UUID | None, str]:
    """A job's ``template`` (``name`` or ``name@N``) as (team template row id or None for a
    built-in, version tag). The latest version unless ``@N`` pins one."""
    if ref in TEMPLATES:
        return None, TEMPLATES[ref].version
    name, _, raw_version = ref.partition("@")
    version: int | None = None
    if raw_version:
        if not raw_version.isdigit() or len(raw_version) > 9:
            raise InvalidRequest({"field": "template", "reason": "use `name` or `name@N`"})
        version = int(raw_version)
    try:
        row = _row(session, team_id, name, version)
    except TemplateNotFound:
        raise InvalidRequest(
            {
                "field": "template",
                "reason": f"unknown template {ref!r}; built-in: {sorted(TEMPLATES)}, or one of "
                "the team's (GET /v1/templates)",
            }
        ) from None
    return row.id, version_tag(row.name, row.version)


def resolved(session: Session, template_id: uuid.UUID | None, ref: str) -> Template:
    """The template :func:`resolve` chose for a new job: the team version, or the built-in."""
    if template_id is None:
        return TEMPLATES[ref]
    row = session.get(PromptTemplate, template_id)
    assert row is not None  # resolve just read it
    return _template(row)


def _template(row: PromptTemplate) -> Template:
    return Template(
        name=row.name,
        version=version_tag(row.name, row.version),
        sources=TemplateSources(**row.sources),
    )


def template_for_job(session: Session, job: Job) -> Template:
    """The template a job pinned: its team template version, or the built-in it names (by the
    version recorded at creation, so a job made under an earlier default keeps its texts)."""
    if job.template_id is None:
        pinned = BUILTIN_VERSIONS.get(job.template_version)
        return pinned if pinned is not None else TEMPLATES[job.spec["template"]]
    row = session.get(PromptTemplate, job.template_id)
    assert row is not None  # a foreign key; versions are never deleted
    return _template(row)
