"""Team-template request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from cgd.security.bounds import RequestModel
from cgd.templates.builtin import DEFAULT_SOURCES
from cgd.templates.core import MAX_SOURCE_CHARS, TemplateSources

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,39}$"

_PART_HELP = {
    "system": "System prompt of the critique conversation (refine continues it); no variables",
    "critique": "Critique request: {{ question }}, {{ answer }}; must ask for the verdict line "
    "`Conclusion: right` / `Conclusion: wrong` verbatim",
    "refine": "The refine turn after the critique: {{ question }}, {{ answer }}, {{ critique }}",
    "solve_system": "System prompt of the teacher_solution call; no variables",
    "solve": "The teacher_solution request: {{ question }}",
}


def _part(name: str) -> object:
    return Field(
        getattr(DEFAULT_SOURCES, name),
        max_length=MAX_SOURCE_CHARS,
        description=_PART_HELP[name] + " (default: the built-in `cgd` text)",
    )


class TemplateBody(RequestModel):
    """The texts of a template version (Jinja: variables, ``if`` blocks, ``~``, and the
    filters trim/lower/upper/capitalize). A part left out keeps the built-in ``cgd`` text."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(None, max_length=2000)
    system: str = _part("system")  # type: ignore[assignment]
    critique: str = _part("critique")  # type: ignore[assignment]
    refine: str = _part("refine")  # type: ignore[assignment]
    solve_system: str = _part("solve_system")  # type: ignore[assignment]
    solve: str = _part("solve")  # type: ignore[assignment]

    def sources(self) -> TemplateSources:
        return TemplateSources(
            system=self.system,
            critique=self.critique,
            refine=self.refine,
            solve_system=self.solve_system,
            solve=self.solve,
        )


class TemplateIn(TemplateBody):
    """Body of ``POST /v1/templates``: a new template, version 1."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "name": "physics-review",
                "critique": "<question>\n{{ question }}\n</question>\n\n<student_answer>\n"
                "{{ answer }}\n</student_answer>\n\nCheck units and every step. End with "
                "exactly `Conclusion: right` or `Conclusion: wrong`.",
            }
        },
    )

    name: str = Field(
        ...,
        pattern=NAME_PATTERN,
        description="Lower-case letters, digits, `_ . -`; 1-40 characters; used as "
        '`"template"` in a job (`"name@N"` pins version N)',
    )


class TemplateOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "3f1b0a52-8d7e-4c36-9a0e-2f4b6c1d9e70",
                "name": "physics-review",
                "version": 2,
                "version_tag": "physics-review@2",
                "builtin": False,
                "description": "Checks units first",
                "system": DEFAULT_SOURCES.system,
                "critique": "<question>\n{{ question }}\n</question>\n…",
                "refine": DEFAULT_SOURCES.refine,
                "solve_system": DEFAULT_SOURCES.solve_system,
                "solve": DEFAULT_SOURCES.solve,
                "created_at": "2026-11-29T15:40:00Z",
            }
        }
    )

    id: uuid.UUID | None = Field(description="null for a built-in template")
    name: str
    version: int
    version_tag: str = Field(description="What jobs and snapshots record, e.g. `mine@3`")
    builtin: bool
    description: str | None
    system: str
    critique: str
    refine: str
    solve_system: str
    solve: str
    created_at: datetime | None
