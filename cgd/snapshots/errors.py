"""Errors of the snapshot operations."""

from __future__ import annotations

from cgd.errors import Conflict, NotFound


class SnapshotNotFound(NotFound):
    """Snapshot not found."""


class SnapshotNotReady(Conflict):
    """The snapshot is still being built (or failed); it has nothing to export yet."""


class SnapshotInUse(Conflict):
    """Training runs use this snapshot; it cannot be deleted while they exist."""


class ModeUnavailable(Conflict):
    """The snapshot's jobs did not produce what this training mode needs."""


class JobUnfinished(Conflict):
    """A job of the snapshot is still queued or running (send allow_partial to build anyway)."""
