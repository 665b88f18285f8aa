"""Errors of the team-template operations."""

from __future__ import annotations

from cgd.errors import Conflict, InvalidRequest, NotFound


class TemplateNotFound(NotFound):
    """Template not found."""


class TemplateExists(Conflict):
    """A template of that name exists; update it (PUT) to add a version."""


class InvalidTemplate(InvalidRequest):
    """The template cannot be used; ``detail.field`` names the part and ``reason`` says why."""
