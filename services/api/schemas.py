"""Response/request bodies (pydantic), separate from the ORM models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = None


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    format: str
    filename: str | None
    num_items: int
    size_bytes: int
    content_hash: str
    fields: dict[str, Any]
    stats: dict[str, Any]
    created_at: datetime


class ItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    idx: int
    item_id: str
    line: int
    prompt: str
    reference: str | None
    response: str | None
    extra: dict[str, Any] | None
