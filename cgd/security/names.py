"""Names and filenames a team chooses: bounded, printable, safe to put in a header."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from cgd.errors import InvalidRequest

MAX_NAME_CHARS = 300
MAX_FILENAME_CHARS = 500
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL = CONTROL_CHARS
_ASCII_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def check_name(value: str | None, field: str, max_chars: int = MAX_NAME_CHARS) -> str | None:
    """``value`` if it is 1 to ``max_chars`` characters with no control character, else 422."""
    if value is None:
        return None
    if not value.strip() or len(value) > max_chars:
        raise InvalidRequest({"field": field, "reason": f"must be 1 to {max_chars} characters"})
    if _CONTROL.search(value):
        raise InvalidRequest({"field": field, "reason": "must not contain control characters"})
    return value


def content_disposition(filename: str) -> str:
    """An RFC 6266 ``attachment`` header: an ASCII fallback ``filename`` (quotes, separators and
    anything non-ASCII replaced) and the exact name as RFC 5987 ``filename*``, so no name can
    add a parameter or break the header's encoding."""
    name = _CONTROL.sub("", filename).replace("/", "_").replace("\\", "_")[:MAX_FILENAME_CHARS]
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    fallback = _ASCII_SAFE.sub("_", ascii_name).strip("._") or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
