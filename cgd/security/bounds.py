"""Bounds every request value must respect before it reaches the database, a worker or a server.

Two layers, both answering 422 with the exact field:

- :class:`RequestModel`, the base of every request body, walks all of its values (nested models,
  lists, free-form dicts such as an endpoint's ``extra`` or a trainer event's ``data``) and
  refuses text holding NUL or a lone surrogate (Postgres text and JSONB cannot store either, and
  psycopg fails deep inside a commit), integers outside 64 bits (Postgres ``bigint``, numpy,
  vLLM's seed) and floats that are not finite (``1e999`` parses as infinity).
- Annotated types for the ranges that make sense per field (``Temperature``, ``Seed``, …), so
  the OpenAPI document states each bound and a fuzzer stays inside it.

Path and query parameters are checked by :func:`check_param_text` (the API's dependency).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from cgd.errors import InvalidRequest

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
SEED_MAX = 2**31 - 1  # torch, numpy and vLLM all take a 32-bit seed
MAX_EVAL_K = 64  # pass@k beyond 64 costs more GPU time than any reported table uses
MAX_EVAL_SAMPLES = 1024  # n samples per problem for unbiased pass@k
MAX_NEW_TOKENS = 32_768  # an eval answer's budget
MAX_COMPLETION_TOKENS = 1_048_576  # a job's max_tokens: beyond any served context window
MAX_STEPS = 10_000_000
MAX_TEMPERATURE = 10.0

Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Temperature = Annotated[float, Field(ge=0.0, le=MAX_TEMPERATURE, allow_inf_nan=False)]
NewTokens = Annotated[int, Field(ge=1, le=MAX_NEW_TOKENS)]
Steps = Annotated[int, Field(ge=1, le=MAX_STEPS)]

# NUL, and UTF-16 halves without their pair (JSON "\ud800" decodes to one in Python).
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
_Loc = tuple[str | int, ...]


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None."""
    m = _BAD_TEXT.search(value)
    if m is None:
        return None
    return "contains a NUL character" if m.group() == "\x00" else "contains a lone surrogate"


def value_problem(value: Any) -> str | None:
    """Why one scalar cannot be accepted, or None (``bool`` is an ``int`` and always fine)."""
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return "must be an integer within 64 bits"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    return None


def problems(value: Any, loc: _Loc = ()) -> Iterator[tuple[_Loc, str, Any]]:
    """Every (location, reason, value) inside ``value`` that :func:`value_problem` refuses;
    dict keys count as text too."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from problems(getattr(value, name), (*loc, name))
    elif isinstance(value, Mapping):
        for k, v in value.items():
            key_reason = value_problem(k) if isinstance(k, str) else None
            # A refused key is shown printable: the error body itself must be encodable.
            at = (
                (*loc, _printable(k))
                if isinstance(k, str)
                else (*loc, k)
                if isinstance(k, int)
                else loc
            )
            if key_reason is not None:
                yield at, f"key {key_reason}", _printable(k)
            yield from problems(v, at)
    elif isinstance(value, list | tuple | set | frozenset):
        for i, v in enumerate(value):
            yield from problems(v, (*loc, i))
    elif isinstance(value, SecretStr):
        reason = text_problem(value.get_secret_value())
        if reason is not None:
            yield loc, reason, "***"
    else:
        reason = value_problem(value)
        if reason is not None:
            yield loc, reason, value


def raise_at(title: str, found: Sequence[tuple[_Loc, str, Any]]) -> None:
    """A pydantic ValidationError located at each field (FastAPI renders it as 422 with
    ``field`` = ``body.<path>``); raising it inside a validator keeps those locations."""
    if not found:
        return
    raise ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("unstorable_value", reason), loc=loc, input=value
            )
            for loc, reason, value in found
        ],
    )


class RequestModel(BaseModel):
    """Base of every request body: no value inside it may be unstorable (see module doc)."""

    @model_validator(mode="after")
    def _storable_values(self) -> RequestModel:
        raise_at(type(self).__name__, list(problems(self)))
        return self


def check_param_text(kind: str, params: Mapping[str, str]) -> None:
    """422 naming ``<kind>.<name>`` for the first path/query parameter holding NUL or a lone
    surrogate (a template name ``a%00b`` would otherwise reach Postgres)."""
    for name, value in params.items():
        reason = text_problem(name) or text_problem(value)
        if reason is not None:
            raise InvalidRequest({"field": f"{kind}.{_printable(name)}", "reason": reason})


def _printable(name: str) -> str:
    return _BAD_TEXT.sub("\ufffd", name)
