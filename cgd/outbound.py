"""The one way the worker and the API reach a server a team named.

A team chooses its endpoints' URLs, and the worker and the API call them from inside the
deployment, so every such request is a request-forgery risk. Every outbound request made on a
team's behalf — chat calls, Batch API files and batches, the server's ``/metrics``, breaker
probes, liveness checks, preflight — goes through :class:`AsyncOutbound` (aiohttp, the worker's
event loop) or :class:`SyncOutbound` (httpx, threads), which:

* check the URL against the allow-list **on every request** (a retry, a metrics URL, a file
  download are each checked on their own: the metrics page lives outside the allowed ``/v1``
  prefix unless the operator allows the server's root);
* never follow a redirect: a 3xx is an answer like any other error, and its ``Location`` is
  never requested (an allowed server could otherwise point us at an internal address);
* read at most ``max_response_bytes`` of a body (a hostile server can't exhaust our memory);
* describe an error answer by its status and a short, sanitised excerpt, never a redirect's
  body (:func:`describe`).

``tests/test_outbound.py`` walks the code for HTTP clients and fails when a module that acts for
a team builds one of its own.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import aiohttp
import httpx

from cgd.security.text import server_text
from cgd.security.urls import check_url

__all__ = [
    "AsyncOutbound",
    "OutboundRefused",
    "Reply",
    "ResponseTooLarge",
    "SyncOutbound",
    "UrlGuard",
    "allowlist_guard",
    "describe",
]

# Raises ValueError (cgd.security.urls.UrlRefused) for a URL that may not be called.
UrlGuard = Callable[[str], None]

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024**2
_CHUNK = 64 * 1024


class OutboundRefused(Exception):
    """The URL may not be called (not in the allow-list, or malformed); nothing was sent."""


class ResponseTooLarge(Exception):
    """The server's answer was longer than the cap; the rest of it was not read."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def redirect(self) -> bool:
        return 300 <= self.status < 400


def describe(reply: Reply, secret: str | None = None) -> str:
    """``HTTP <status>: <short sanitised excerpt>``; a redirect is named, its body never shown."""
    if reply.redirect:
        return f"HTTP {reply.status}: redirects are not followed"
    text = server_text(reply.body, secret)
    return f"HTTP {reply.status}: {text}" if text else f"HTTP {reply.status}"


def allowlist_guard(allowlist: str) -> UrlGuard:
    """The operator's ``CGD_ENDPOINT_ALLOWLIST`` as a guard."""
    return lambda url: check_url(url, allowlist)


@cache
def tls_context() -> ssl.SSLContext:
    """One TLS context per process: building one (CA bundle load) costs ~0.1 s."""
    return ssl.create_default_context()


def _check(guard: UrlGuard | None, url: str) -> None:
    if guard is None:
        return
    try:
        guard(url)
    except ValueError as exc:
        raise OutboundRefused(str(exc)) from None


def _too_large(limit: int) -> ResponseTooLarge:
    return ResponseTooLarge(f"response longer than {limit} bytes; not read")


class AsyncOutbound:
    """One aiohttp session, bound to the event loop it was first used in."""

    def __init__(
        self,
        guard: UrlGuard | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.guard = guard
        self.max_response_bytes = max_response_bytes
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def check(self, url: str) -> None:
        """Raise :class:`OutboundRefused` for a URL the guard refuses."""
        _check(self.guard, url)

    def allowed(self, url: str) -> bool:
        try:
            _check(self.guard, url)
        except OutboundRefused:
            return False
        return True

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise RuntimeError(
                "the outbound client is bound to the event loop it was first used in; "
                "aclose() it first"
            )
        self._loop = loop
        if self._session is None or self._session.closed:
            # No connector-wide cap (limit=0): the callers' per-endpoint windows are the only
            # bound, so the connector can never become a smaller hidden bottleneck.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        timeout: aiohttp.ClientTimeout,
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
        **kwargs: Any,
    ) -> Reply:
        """Send one request (``data``/``json``/``params`` as aiohttp takes them).

        Raises :class:`OutboundRefused` before sending anything to a URL the guard refuses,
        :class:`ResponseTooLarge` past the cap, and aiohttp's errors / ``TimeoutError`` as they
        come."""
        _check(self.guard, url)
        limit = max_bytes or self.max_response_bytes
        async with self.session().request(
            method, url, headers=headers, timeout=timeout, allow_redirects=False, **kwargs
        ) as resp:
            length = resp.content_length
            if length is not None and length > limit:
                raise _too_large(limit)
            if length is not None:
                body = await resp.read()
            else:  # chunked: count as it arrives
                buf = bytearray()
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    buf += chunk
                    if len(buf) > limit:
                        raise _too_large(limit)
                body = bytes(buf)
            return Reply(resp.status, resp.headers, body)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._loop = None


class SyncOutbound:
    """The same rules for code on threads (the API's preflight, the sweeper's probes)."""

    def __init__(
        self,
        guard: UrlGuard | None,
        timeout_s: float,
        headers: Mapping[str, str] | None = None,
        max_response_bytes: int = 1024**2,
    ) -> None:
        self.guard = guard
        self.max_response_bytes = max_response_bytes
        self._client = httpx.Client(
            timeout=timeout_s,
            headers=dict(headers or {}),
            follow_redirects=False,
            verify=tls_context(),
        )

    def __enter__(self) -> SyncOutbound:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def request(self, method: str, url: str, **kwargs: Any) -> Reply:
        """As :meth:`AsyncOutbound.request`; httpx's errors come through as they are."""
        _check(self.guard, url)
        limit = self.max_response_bytes
        with self._client.stream(method, url, **kwargs) as resp:
            buf = bytearray()
            for chunk in resp.iter_bytes(_CHUNK):
                buf += chunk
                if len(buf) > limit:
                    raise _too_large(limit)
            return Reply(resp.status_code, resp.headers, bytes(buf))
