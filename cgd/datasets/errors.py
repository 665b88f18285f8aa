"""Errors of the dataset operations (rendered as ``{"error", "detail"}`` by the API)."""

from __future__ import annotations

from typing import Any

from cgd.errors import CgdError, Conflict, NotFound, PayloadTooLarge


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


class DatasetTooLarge(PayloadTooLarge):
    """The upload is over a size limit; ``detail.setting`` names the setting that sets it."""

    def __init__(self, reason: str, setting: str, line: int | None = None) -> None:
        super().__init__({"reason": f"{reason} ({setting})", "setting": setting, "line": line})
