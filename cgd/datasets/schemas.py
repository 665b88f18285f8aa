"""Dataset request and response bodies."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cgd.datasets.ingest import FieldMap

# The multipart form fields of an upload, besides ``file``.
FORM_FIELDS = (
    "name",
    "prompt_field",
    "reference_field",
    "response_field",
    "id_field",
    "solution_field",
)


@dataclass(frozen=True)
class Upload:
    """A request body already spooled to disk (size-checked and hashed while streaming)."""

    path: Path
    filename: str | None
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class DatasetParams:
    name: str | None = None
    prompt_field: str | None = None
    reference_field: str | None = None
    response_field: str | None = None
    id_field: str | None = None
    solution_field: str | None = None

    def fields(self) -> FieldMap:
        return FieldMap(
            self.prompt_field,
            self.reference_field,
            self.response_field,
            self.id_field,
            self.solution_field,
        )


class DatasetOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "b2824380-ff7a-4e27-990d-f5cdeaa92cc9",
                "name": "gsm8k-200",
                "format": "jsonl",
                "filename": "gsm8k_200.jsonl",
                "num_items": 200,
                "size_bytes": 114100,
                "content_hash": "9f2c…",
                "fields": {"prompt": "question", "reference": "answer"},
                "stats": {"rows": 200, "share_with_reference": 1.0},
                "created_at": "2026-11-27T23:38:24Z",
            }
        },
    )

    id: uuid.UUID
    name: str
    format: str = Field(description="jsonl, jsonl.gz, json, csv or parquet")
    filename: str | None
    num_items: int
    size_bytes: int
    content_hash: str = Field(description="sha256 of the uploaded bytes")
    fields: dict[str, Any] = Field(description="Which source column became which field")
    stats: dict[str, Any] = Field(description="Row count, prompt-length percentiles, coverage")
    created_at: datetime


class ItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    idx: int = Field(description="0-based position in the dataset")
    item_id: str
    line: int = Field(
        description="1-based line (the row for Parquet, the element for a .json array) in the "
        "uploaded file"
    )
    prompt: str
    reference: str | None
    solution: str | None = Field(None, description="A worked solution kept beside the answer")
    response: str | None
    extra: dict[str, Any] | None
