"""A dataset's own columns (``id``, ``source``, ``difficulty``, …) carried into every export.

A snapshot records, when it is built, which extra columns its rows have and one Parquet type
per column: ``string``, ``int64``, ``double``, ``bool``, or ``json`` for anything else (lists,
objects, mixed types), which Parquet holds as text: a string as itself, any other value as
JSON. JSONL keeps each value as uploaded. Flat layouts (``native``, ``alpaca``, the Hub's) hold
them as their own columns; a name the layout already uses gets an ``extra_`` prefix. Chat
layouts (``messages``, ``sharegpt``, ``prompt-completion``) hold them under ``metadata``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import pyarrow as pa

KINDS = ("string", "int64", "double", "bool", "json")
ARROW = {"string": pa.string(), "int64": pa.int64(), "double": pa.float64(), "bool": pa.bool_()}
ExtraColumns = dict[str, str]  # column name -> kind, in order of first appearance


class ExtraColumnsSeen:
    """Collects the extra columns of rows as they stream by (one small dict per column)."""

    def __init__(self) -> None:
        self._kinds: dict[str, set[str]] = {}

    def observe(self, extra: Mapping[str, Any] | None) -> None:
        for name, value in (extra or {}).items():
            kinds = self._kinds.setdefault(name, set())
            if value is not None:
                kinds.add(_kind_of(value))

    def result(self) -> ExtraColumns:
        return {name: _merge(kinds) for name, kinds in self._kinds.items()}


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "double"
    return "string" if isinstance(value, str) else "json"


def _merge(kinds: set[str]) -> str:
    if len(kinds) == 1:
        return next(iter(kinds))
    if kinds == {"int64", "double"}:
        return "double"
    return "string" if not kinds else "json"


def column_names(columns: Iterable[str], taken: Iterable[str]) -> dict[str, str]:
    """Extra column -> the name it has in a flat layout whose own columns are ``taken``."""
    used = set(taken)
    out: dict[str, str] = {}
    for name in columns:
        col = name
        while col in used:
            col = f"extra_{col}"
        used.add(col)
        out[name] = col
    return out


def flat_schema(schema: pa.Schema, extra: ExtraColumns) -> pa.Schema:
    """``schema`` of a flat layout with each extra column as a column of its own."""
    names = column_names(extra, schema.names)
    return pa.schema([*schema, *(pa.field(names[n], arrow_type(k)) for n, k in extra.items())])


def arrow_type(kind: str) -> pa.DataType:
    return ARROW.get(kind, pa.string())


def arrow_value(value: Any, type_: pa.DataType) -> Any:
    """A value as a Parquet column of ``type_`` holds it: a text column holds any other JSON
    value (a ``json`` column's lists and objects, mixed types) as JSON text."""
    if value is None:
        return None
    if pa.types.is_string(type_) and not isinstance(value, str):
        return orjson.dumps(value).decode()
    if pa.types.is_floating(type_) and not isinstance(value, bool):
        return float(value)
    return value
