"""Structured (JSON lines) logging for every process. Never log secrets: keys, tokens, URLs with
credentials are redacted before they reach a handler."""

from __future__ import annotations

import logging
import os
import re
import sys
import time

import orjson

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_SECRET_RE = re.compile(
    r"(cgd_[0-9a-f]{12}_)[A-Za-z0-9_\-]+|(Bearer\s+)\S+|(://[^:/@\s]+:)[^@\s]+@"
)


def redact(text: str) -> str:
    return _SECRET_RE.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "***", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            payload["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(payload, default=str).decode()


def setup_logging(level: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("CGD_LOG_LEVEL", "INFO")).upper())
