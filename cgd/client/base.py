"""All of the client's transport: the two settings, retries, idempotency keys, error mapping.

:class:`BaseClient` (httpx, blocking) and :class:`AsyncBaseClient` (httpx, asyncio) send one
logical request each through the project's one retry policy (:mod:`cgd.retry`: ``max_retries``,
full-jitter exponential backoff, ``Retry-After`` in seconds or as an HTTP-date honoured up to
``retry_after_max_s``). Retries cover 502/503/504 answers and transport errors, but only where
repeating the request cannot do the work twice:

* ``GET``/``PUT``/``DELETE`` are idempotent: retried on those statuses and on any transport error
  (a ``DELETE`` whose first attempt's answer was lost and whose retry gets 404 counts as done).
* ``POST`` creates or changes something. It is retried after a *connect* error (the request was
  never sent), and otherwise only when it carries an ``Idempotency-Key``, which the server
  honours by answering a repeat with the first result. The key is made once per call and reused
  by every attempt of it.
* 4xx answers are never retried: the request itself is wrong. They raise the exception for their
  status (:mod:`cgd.client.errors`).

The client reads its two settings itself, ``CGD_API_URL`` (default ``http://127.0.0.1:8000``)
and ``CGD_API_KEY``, so it needs neither the server's settings nor its database layer.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from cgd.client.errors import CgdConnectionError, error_from_response
from cgd.retry import RetryPolicy, Transient, parse_retry_after

__all__ = [
    "DEFAULT_API_URL",
    "AsyncBaseClient",
    "BaseClient",
    "body_of",
    "idempotency_key",
    "query",
]

DEFAULT_API_URL = "http://127.0.0.1:8000"
M = TypeVar("M", bound=BaseModel)

_RETRY_STATUSES = frozenset({502, 503, 504})
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "PUT"})
# Errors raised before a single byte of the request left this machine.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class _Again(Transient):
    """An attempt worth repeating: the transport error, or the transient answer, it ended in."""

    def __init__(
        self,
        error: httpx.TransportError | None = None,
        response: httpx.Response | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(type(error).__name__ if error else "transient answer", retry_after_s)
        self.error = error
        self.response = response


def body_of(spec: Any) -> dict[str, Any]:
    """A request body from a dict or a pydantic model (secrets revealed for the wire)."""
    if spec is None:
        return {}
    stored = getattr(spec, "stored", None)  # JobSpec: the API keys, not their masks
    if callable(stored):
        return dict(stored())
    if isinstance(spec, BaseModel):
        return spec.model_dump(mode="json")
    if isinstance(spec, Mapping):  # ids and dates as they are written in JSON
        return dict(to_jsonable_python(dict(spec)))
    raise TypeError(f"expected a dict or a pydantic model, got {type(spec).__name__}")


def idempotency_key(given: str | None = None) -> str:
    """``given``, or a fresh random ``Idempotency-Key`` for one call (reused by its retries)."""
    return given or f"cgd-client-{uuid.uuid4()}"


def _parsed(response: httpx.Response) -> Any:
    """The JSON body of an answer; ``None`` for an empty one."""
    if response.status_code == 204 or not response.content:
        return None
    return response.json()


def query(**kw: Any) -> dict[str, Any]:
    """Query parameters without the unset ones; booleans as the API spells them."""
    out: dict[str, Any] = {}
    for k, v in kw.items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else v
    return out


class _Config:
    """What both clients share: where, who, timeouts and the retry policy."""

    def __init__(
        self,
        api_url: str | None,
        api_key: str | None,
        timeout: float,
        transfer_timeout: float,
        max_retries: int,
        backoff_s: float,
        max_backoff_s: float,
        retry_after_max_s: float,
    ) -> None:
        api_url = api_url or os.environ.get("CGD_API_URL") or DEFAULT_API_URL
        self.api_key = api_key or os.environ.get("CGD_API_KEY") or None
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.transfer_timeout = transfer_timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.retry = RetryPolicy(
            max_attempts=max_retries + 1,
            backoff_base_s=backoff_s,
            backoff_max_s=max_backoff_s,
            retry_after_max_s=retry_after_max_s,
        )

    @property
    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": "cgd-client/1"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    @property
    def transfer(self) -> httpx.Timeout:
        """Uploads and downloads: the usual connect timeout, a long read timeout."""
        return httpx.Timeout(self.timeout, read=self.transfer_timeout)

    def __repr__(self) -> str:  # never shows the key
        return f"{type(self).__name__}(api_url={self.api_url!r})"

    @staticmethod
    def _repeatable(method: str, headers: Mapping[str, str] | None) -> bool:
        return method in _IDEMPOTENT_METHODS or any(
            k.lower() == "idempotency-key" for k in headers or {}
        )

    def _transport_failed(self, exc: httpx.TransportError, repeatable: bool) -> _Again:
        """Never sent: always safe to repeat. Sent but no answer: only when repeatable."""
        if not (isinstance(exc, _NOT_SENT_ERRORS) or repeatable):
            raise CgdConnectionError(self.api_url, exc) from exc
        return _Again(error=exc)

    def _finish(
        self,
        last: _Again | None,
        response: httpx.Response | None,
        method: str,
        lost_answer: bool,
        ok_statuses: tuple[int, ...],
    ) -> tuple[httpx.Response, bool]:
        """The final answer once retries are over → (response, is_error)."""
        if last is not None:
            if last.error is not None:
                raise CgdConnectionError(self.api_url, last.error) from last.error
            response = last.response
        assert response is not None
        status = response.status_code
        if status == 404 and method == "DELETE" and lost_answer:
            return response, False  # the first attempt did it; only its answer was lost
        return response, status >= 400 and status not in ok_statuses


class BaseClient(_Config):
    """Blocking transport. ``timeout`` is the per-request timeout in seconds (uploads and
    exports get a longer read timeout, ``transfer_timeout``); ``max_retries`` and ``backoff_s``
    shape the retries in the module docstring. Use it as a context manager, or call
    :meth:`close`."""

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        *,
        transfer_timeout: float = 1800.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        retry_after_max_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            api_url,
            api_key,
            timeout,
            transfer_timeout,
            max_retries,
            backoff_s,
            max_backoff_s,
            retry_after_max_s,
        )
        self._http = httpx.Client(
            base_url=self.api_url, headers=self.headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BaseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        stream: bool = False,
        ok_statuses: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        """One logical request, with the retries the module docstring describes. The request is
        rebuilt for every attempt (a streamed upload rewinds its file)."""
        repeatable = self._repeatable(method, kwargs.get("headers"))
        lost_answer = False
        response: httpx.Response | None = None
        last: _Again | None = None
        try:
            for attempt in self.retry.retrying(sleep=time.sleep):
                with attempt:
                    request = self._http.build_request(method, path, **kwargs)
                    try:
                        response = self._http.send(request, stream=stream)
                    except httpx.TransportError as exc:
                        again = self._transport_failed(exc, repeatable)
                        lost_answer = lost_answer or not isinstance(exc, _NOT_SENT_ERRORS)
                        raise again from exc
                    if response.status_code in _RETRY_STATUSES and repeatable:
                        response.read()  # kept for the error should this be the last attempt
                        response.close()
                        wait = parse_retry_after(response.headers.get("retry-after"))
                        raise _Again(response=response, retry_after_s=wait)
        except _Again as exc:
            last = exc
        response, failed = self._finish(last, response, method, lost_answer, ok_statuses)
        if failed:
            if stream:
                response.read()
                response.close()
            raise error_from_response(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return _parsed(self._send(method, path, **kwargs))

    def _request(self, cast_to: type[M], method: str, path: str, **kwargs: Any) -> M:
        return cast_to.model_validate(self._json(method, path, **kwargs))


class AsyncBaseClient(_Config):
    """The asyncio twin of :class:`BaseClient` (same arguments, same retries)."""

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        *,
        transfer_timeout: float = 1800.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        retry_after_max_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            api_url,
            api_key,
            timeout,
            transfer_timeout,
            max_retries,
            backoff_s,
            max_backoff_s,
            retry_after_max_s,
        )
        self._http = httpx.AsyncClient(
            base_url=self.api_url, headers=self.headers, timeout=timeout, transport=transport
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncBaseClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        stream: bool = False,
        ok_statuses: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        repeatable = self._repeatable(method, kwargs.get("headers"))
        lost_answer = False
        response: httpx.Response | None = None
        last: _Again | None = None
        try:
            async for attempt in self.retry.async_retrying():
                with attempt:
                    request = self._http.build_request(method, path, **kwargs)
                    try:
                        response = await self._http.send(request, stream=stream)
                    except httpx.TransportError as exc:
                        again = self._transport_failed(exc, repeatable)
                        lost_answer = lost_answer or not isinstance(exc, _NOT_SENT_ERRORS)
                        raise again from exc
                    if response.status_code in _RETRY_STATUSES and repeatable:
                        await response.aread()
                        await response.aclose()
                        wait = parse_retry_after(response.headers.get("retry-after"))
                        raise _Again(response=response, retry_after_s=wait)
        except _Again as exc:
            last = exc
        response, failed = self._finish(last, response, method, lost_answer, ok_statuses)
        if failed:
            if stream:
                await response.aread()
                await response.aclose()
            raise error_from_response(response)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return _parsed(await self._send(method, path, **kwargs))

    async def _request(self, cast_to: type[M], method: str, path: str, **kwargs: Any) -> M:
        return cast_to.model_validate(await self._json(method, path, **kwargs))
