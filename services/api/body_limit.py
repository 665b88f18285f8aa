"""JSON request bodies are bounded before anything parses them: over ``CGD_MAX_JSON_BYTES`` is a
413 naming the setting (checked against Content-Length at once, and counted as the body streams
in, so a chunked body can't get past it), and nesting too deep for any parser is a 422.
Multipart uploads are left to the upload route, which has limits of its own."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.errors import JSONBody

SETTING = "CGD_MAX_JSON_BYTES"


class JsonBodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if headers.get(b"content-type", b"").startswith(b"multipart/"):
            await self.app(scope, receive, send)
            return
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            body.extend(message.get("body", b""))
            if len(body) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            more = message.get("more_body", False)
        if body and _too_deep(bytes(body)):
            response = JSONBody(
                {
                    "error": "InvalidRequest",
                    "detail": {
                        "field": "body",
                        "reason": f"JSON nested deeper than {MAX_DEPTH} levels",
                    },
                },
                status_code=422,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": bytes(body)}]), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONBody(
            {
                "error": "PayloadTooLarge",
                "detail": {
                    "reason": f"JSON body is over {self.max_bytes} bytes ({SETTING})",
                    "setting": SETTING,
                },
            },
            status_code=413,
        )
        await response(scope, receive, send)


MAX_DEPTH = 256


def _too_deep(body: bytes) -> bool:
    """Whether the body nests deeper than ``MAX_DEPTH`` (the standard parser would raise
    RecursionError near 1000). Other malformations are left to the route's own 422."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return "depth" in str(exc).lower() or "recursion" in str(exc).lower()
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_DEPTH:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _replay(messages: list[Message]) -> Receive:
    queue: list[Any] = list(messages)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)  # type: ignore[no-any-return]
        return {"type": "http.disconnect"}

    return receive
