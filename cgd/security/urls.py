"""Endpoint URL policy: which LLM servers a job may make the worker call.

A job's ``base_url`` is chosen by a team, but the worker calls it from inside the deployment,
so an unchecked URL is a request-forgery tool (Postgres, cloud metadata, the API itself). The
operator lists allowed endpoints in ``CGD_ENDPOINT_ALLOWLIST``; nothing is allowed by default.

Entries are URL prefixes compared after parsing: scheme and host exactly, port exactly (or any
port with ``:*``, for test rigs on loopback), path as a ``/``-bounded prefix. ``*`` alone allows
every URL (explicit opt-in; the API logs a warning at start). URLs whose meaning depends on who
parses them are refused outright, whatever the list says: dot segments (plain or
percent-encoded), backslashes, user info, control characters or spaces, empty host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

SETTING = "CGD_ENDPOINT_ALLOWLIST"
ANY_PORT = -1
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSAFE_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


class UrlRefused(ValueError):
    """Why a URL may not be called (a sentence fit for an API error)."""


@dataclass(frozen=True, slots=True)
class _Parts:
    scheme: str
    host: str
    port: int
    path: str


def allowlist_entries(allowlist: str) -> list[str]:
    return [p.strip() for p in allowlist.split(",") if p.strip()]


def allows_everything(allowlist: str) -> bool:
    return "*" in allowlist_entries(allowlist)


def check_url(url: str, allowlist: str) -> None:
    """Raise :class:`UrlRefused` unless ``url`` is well-formed and under an allow-list entry."""
    target = _parse(url, allow_any_port=False)
    entries = allowlist_entries(allowlist)
    if not entries:
        raise UrlRefused(
            f"no endpoints are allowed: the operator sets {SETTING} to a comma-separated list "
            "of endpoint URL prefixes (e.g. http://vllm-teacher:8000/v1)"
        )
    if "*" in entries:
        return
    for entry in entries:
        try:
            allowed = _parse(entry, allow_any_port=True)
        except UrlRefused:
            continue  # an operator typo allows nothing rather than something unexpected
        if (allowed.scheme, allowed.host) != (target.scheme, target.host):
            continue
        if allowed.port not in (ANY_PORT, target.port):
            continue
        prefix = allowed.path.rstrip("/")
        if target.path == prefix or target.path.startswith(prefix + "/"):
            return
    raise UrlRefused(f"endpoint is not in {SETTING} (ask the operator to add it)")


def url_allowed(url: str, allowlist: str) -> bool:
    try:
        check_url(url, allowlist)
    except UrlRefused:
        return False
    return True


def _parse(url: str, allow_any_port: bool) -> _Parts:
    if _UNSAFE_CHARS.search(url):
        raise UrlRefused("URL contains a backslash, space or control character")
    port_any = allow_any_port and re.search(r"^[a-z]+://[^/]*:\*(/|$)", url, re.IGNORECASE)
    if port_any:
        url = url.replace(":*", "", 1)
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError as exc:
        raise UrlRefused(f"unparsable URL: {exc}") from None
    if u.scheme not in _DEFAULT_PORTS:
        raise UrlRefused("URL must be http:// or https://")
    if "@" in u.netloc:
        raise UrlRefused("URL must not contain user info (user:password@); use api_key")
    if not u.hostname:
        raise UrlRefused("URL has no host")
    if u.query or u.fragment:
        raise UrlRefused("URL must not have a query or fragment")
    decoded = unquote(unquote(u.path))  # double-encoded dots count too
    if any(seg in (".", "..") for seg in decoded.split("/")) or "\\" in decoded:
        raise UrlRefused("URL path must not contain dot segments (. or ..), plain or encoded")
    if "%2f" in u.path.lower() or "%5c" in u.path.lower():
        raise UrlRefused("URL path must not contain encoded slashes or backslashes")
    return _Parts(
        u.scheme,
        u.hostname.lower().rstrip("."),
        ANY_PORT if port_any else (port or _DEFAULT_PORTS[u.scheme]),
        u.path.rstrip("/"),
    )
