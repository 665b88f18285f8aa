"""Errors of the dataset operations (rendered as ``{"error", "detail"}`` by the API)."""

from __future__ import annotations

from typing import Any

from cgd.errors import CgdError, Conflict, NotFound


class DatasetNotFound(NotFound):
    """Dataset not found."""


class InvalidDataset(CgdError):
    """The uploaded file is not a valid dataset; ``detail`` names the line and the reason."""

    status_code = 422

    def __init__(self, reason: str, line: int | None = None, field: str | None = None) -> None:
        detail: dict[str, Any] = {"line": line, "reason": reason}
        if field is not None:
            detail["field"] = field
        super().__init__(detail)


class DatasetInUse(Conflict):
    """Generation jobs use this dataset; it cannot be deleted while they exist."""
