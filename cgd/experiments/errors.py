"""Errors of the experiment operations."""

from __future__ import annotations

from cgd.errors import NotFound


class ExperimentNotFound(NotFound):
    """Experiment not found."""
