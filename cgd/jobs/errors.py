"""Errors of the job operations."""

from __future__ import annotations

from cgd.errors import Conflict, NotFound


class JobNotFound(NotFound):
    """Job not found."""


class JobNotCancellable(Conflict):
    """The job already finished; it cannot be cancelled."""


class JobNotRetryable(Conflict):
    """The job was cancelled or is still running its first pass; nothing to retry."""


class JobNotPaused(Conflict):
    """The job is not paused; there is nothing to resume."""
