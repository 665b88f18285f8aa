"""Text that comes from an endpoint and ends up in a team's view (``triplets[].error``)."""

from __future__ import annotations

import re

MAX_SERVER_TEXT_BYTES = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def server_text(raw: bytes, secret: str | None = None) -> str:
    """At most 200 bytes of a server's error body, control characters replaced by a space and
    the API key masked should the server echo it. Bounded so an endpoint's answer cannot be
    read back through error messages beyond a short diagnostic."""
    text = raw[: MAX_SERVER_TEXT_BYTES * 4].decode("utf-8", "replace")
    if secret:
        text = text.replace(secret, "***")
    text = _CONTROL.sub(" ", text).strip()
    return text.encode()[:MAX_SERVER_TEXT_BYTES].decode("utf-8", "ignore")
