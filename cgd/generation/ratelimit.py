"""Request and token rate limits of hosted endpoints: ``rate_limit {rpm, tpm}`` and the
``x-ratelimit-*`` headers a hosted API sends with every answer.

A hosted API's limit is in requests and tokens per minute, not in requests in flight, so the
adaptive in-flight bound alone would learn it only from 429s. :class:`RateGate` spends from two
token buckets (refilled continuously at ``rpm/60`` and ``tpm/60`` per second, holding at most
``burst_s`` seconds' worth) before each attempt, and closes until the announced reset when the
server says a budget is spent (``x-ratelimit-remaining-requests: 0``, or fewer tokens left than
the request may use). A request is charged its prompt estimate plus its completion budget, as
OpenAI counts ``max_tokens`` against the token limit. With several worker processes each takes
``1 / live processes`` of the configured rates.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset(value: str | None) -> float | None:
    """Seconds until an ``x-ratelimit-reset-*`` value: ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"2"``."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION_RE.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


class _Bucket:
    def __init__(self, per_minute: float, burst_s: float) -> None:
        self.per_minute = per_minute
        self.burst_s = burst_s
        self.level = self.capacity
        self.at = time.monotonic()

    @property
    def capacity(self) -> float:
        return max(1.0, self.per_minute / 60.0 * self.burst_s)

    def wait_for(self, amount: float, share: int) -> float:
        """Seconds until ``amount`` is available (0 = take it now, and it is taken)."""
        rate = self.per_minute / 60.0 / share
        now = time.monotonic()
        self.level = min(self.capacity / share, self.level + (now - self.at) * rate)
        self.at = now
        amount = min(amount, self.capacity / share)  # a request larger than the burst still goes
        if self.level >= amount:
            self.level -= amount
            return 0.0
        return (amount - self.level) / rate


class RateGate:
    """Before each attempt: ``await gate.admit(tokens)``; after it: ``gate.observe(headers)``."""

    def __init__(self, rpm: int | None, tpm: int | None, burst_s: float = 6.0) -> None:
        self.requests = _Bucket(rpm, burst_s) if rpm else None
        self.tokens = _Bucket(tpm, burst_s) if tpm else None
        self.closed_until = 0.0
        self.share = 1  # live worker processes on this endpoint
        self._lock = asyncio.Lock()

    async def admit(self, tokens: int) -> None:
        async with self._lock:  # FIFO: one caller at a time waits for the buckets
            while True:
                wait = self.closed_until - time.monotonic()
                if wait <= 0 and self.requests is not None:
                    wait = self.requests.wait_for(1, self.share)
                if wait <= 0 and self.tokens is not None:
                    wait = self.tokens.wait_for(tokens, self.share)
                    if wait > 0 and self.requests is not None:
                        self.requests.level += 1  # not sent yet: give the request back
                if wait <= 0:
                    return
                await asyncio.sleep(wait)

    def observe(self, headers: Mapping[str, str], tokens: int) -> None:
        """Close the gate until the reset a server announces once a budget is spent."""
        remaining_req = _int(headers.get("x-ratelimit-remaining-requests"))
        remaining_tok = _int(headers.get("x-ratelimit-remaining-tokens"))
        until = 0.0
        if remaining_req is not None and remaining_req <= 0:
            until = max(until, parse_reset(headers.get("x-ratelimit-reset-requests")) or 1.0)
        if remaining_tok is not None and remaining_tok < tokens:
            until = max(until, parse_reset(headers.get("x-ratelimit-reset-tokens")) or 1.0)
        if until:
            self.closed_until = max(self.closed_until, time.monotonic() + until)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
