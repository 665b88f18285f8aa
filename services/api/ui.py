"""The web dashboard at ``/ui/``: static files (``services/api/ui/``, no build step) served by
the API itself, with a strict Content-Security-Policy on every response under ``/ui``.

The pages call the same REST API with the API key the user signed in with (kept in the tab's
sessionStorage); the server holds no session. No inline scripts or styles, nothing from another
origin: KaTeX is vendored under ``ui/vendor/katex`` and renders MathML (no inline styles).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

UI_DIR = Path(__file__).parent / "ui"

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    # Pages are small and change with each release: always revalidate.
    (b"cache-control", b"no-cache"),
]


class UiHeaders:
    """Pure ASGI middleware: adds the security headers to every ``/ui`` response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not (
            scope["path"] == "/ui" or scope["path"].startswith("/ui/")
        ):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": kept + SECURITY_HEADERS}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_ui(app: FastAPI) -> None:
    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")
    app.add_middleware(UiHeaders)
