"""Snapshot request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cgd.curation.filters import CurationSpec
from cgd.enums import SnapshotStatus

__all__ = ["CardOut", "CurationSpec", "SnapshotDetail", "SnapshotOut"]


class SnapshotOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "5d0c4c8e-5b3a-4e0e-9a59-0d7f3c1e2b11",
                "name": "gsm8k-cgd-v1",
                "status": "ready",
                "job_ids": ["118858f4-ddce-4feb-8fdb-0119cad6cc7f"],
                "num_items": 187,
                "stats": {
                    "input": 200,
                    "dropped": {"refined_incorrect": 13},
                    "output": 187,
                    "train": 187,
                    "val": 0,
                },
                "content_hash": "c6f1…",
                "spec": {"filters": {"refined_correct": True}},
                "lineage": {"jobs": []},
                "error": None,
                "created_at": "2026-11-27T23:40:00Z",
                "finished_at": "2026-11-27T23:40:01Z",
            }
        },
    )

    id: uuid.UUID
    name: str | None
    status: SnapshotStatus
    job_ids: list[str]
    num_items: int = Field(description="Rows selected (0 while building)")
    stats: dict[str, Any] = Field(
        description="input, dropped (rows per reason), output, train, val"
    )
    content_hash: str | None = Field(description="sha256 over the rows and the spec")
    spec: dict[str, Any] = Field(description="The curation spec as submitted")
    lineage: dict[str, Any] = Field(description="The jobs' models, templates and verifier")
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class SnapshotDetail(SnapshotOut):
    dropped: list[dict[str, Any]] | None = Field(
        None, description="Samples of dropped rows with their reason (what a filter removed)"
    )


class CardOut(BaseModel):
    """The dataset card: structured fields plus the same card rendered as Markdown."""

    model_config = ConfigDict(extra="allow")

    markdown: str
