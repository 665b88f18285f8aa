"""Errors of the training-run operations."""

from __future__ import annotations

from cgd.errors import Conflict, NotFound


class TrainingRunNotFound(NotFound):
    """Training run not found."""


class TrainingRunFinished(Conflict):
    """The training run already finished."""
