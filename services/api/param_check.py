"""Path and query parameters are text a team chooses too: refuse NUL and lone surrogates before a
route runs (a template named ``a%00b`` otherwise reaches Postgres, which cannot store it)."""

from __future__ import annotations

from fastapi import Request

from cgd.security.bounds import check_param_text


async def storable_params(request: Request) -> None:
    """App-wide dependency: 422 naming ``path.<name>`` or ``query.<name>``."""
    check_param_text("path", request.path_params)
    check_param_text("query", request.query_params)
