"""Request and token rate limits of hosted endpoints: ``rate_limit {rpm, tpm}`` and the
``x-ratelimit-*`` headers a hosted API sends with every answer.

A hosted API's limit is in requests and tokens per minute, not in requests in flight, so the
adaptive in-flight bound alone would learn it only from 429s. :class:`RateGate` spends from two
token buckets (refilled continuously at ``rpm/60`` and ``tpm/60`` per second, holding at most
``burst_s`` seconds' worth) before each attempt. It also takes in the server's
``x-ratelimit-remaining-*`` counts, counts them down by each request sent, and once a budget is
spent sends nothing until the announced ``x-ratelimit-reset-*``. A request is charged its prompt
estimate plus its completion budget, as OpenAI counts ``max_tokens`` against the token limit.
With several worker processes each takes ``1 / live processes`` of the configured rates.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping

from cgd.retry import plain_seconds

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset(value: str | None) -> float | None:
    """Seconds until an ``x-ratelimit-reset-*`` value: ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"2"``."""
    if not value:
        return None
    seconds = plain_seconds(value)
    if seconds is not None:
        return seconds
    value = value.strip()
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


class _Announced:
    """What the server last said about one budget (requests or tokens) and its reset, counted
    down locally by what has been sent since, so a burst cannot overrun it between answers."""

    def __init__(self) -> None:
        self.limit: int | None = None
        self.remaining: float | None = None
        self.reset_at = 0.0
        self.reset_s = 1.0

    def observe(self, limit: int | None, remaining: int | None, reset_s: float | None) -> None:
        if remaining is None:
            return
        now = time.monotonic()
        self.limit = limit if limit is not None else self.limit
        if self.remaining is None or now >= self.reset_at:
            self.remaining = float(remaining)
        else:  # answers arrive out of order: the lowest count in this window is the truest
            self.remaining = min(self.remaining, float(remaining))
        self.reset_s = reset_s if reset_s is not None else 1.0
        self.reset_at = now + self.reset_s

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` fits in the announced budget (0 = spent now)."""
        if self.remaining is None:
            return 0.0
        now = time.monotonic()
        if now >= self.reset_at:
            # A new window: the announced limit again, until an answer says otherwise.
            self.remaining = float(self.limit) if self.limit is not None else None
            # Until an answer says when this window ends, assume it lasts as long as the last
            # announced wait did.
            self.reset_at = now + self.reset_s
            if self.remaining is None:
                return 0.0
        if self.remaining >= min(amount, float(self.limit or amount)):
            self.remaining -= amount
            return 0.0
        return max(0.001, self.reset_at - now)


class RateGate:
    """Before each attempt: ``await gate.admit(tokens)``; after it: ``gate.observe(headers)``."""

    def __init__(self, rpm: int | None, tpm: int | None, burst_s: float = 6.0) -> None:
        self.requests = _Bucket(rpm, burst_s) if rpm else None
        self.tokens = _Bucket(tpm, burst_s) if tpm else None
        self.announced_requests = _Announced()
        self.announced_tokens = _Announced()
        self.share = 1  # live worker processes on this endpoint
        self._lock = asyncio.Lock()

    def _idle(self) -> bool:
        return (
            self.requests is None
            and self.tokens is None
            and self.announced_requests.remaining is None
            and self.announced_tokens.remaining is None
        )

    async def admit(self, tokens: int) -> None:
        if self._idle():
            return  # nothing configured or announced: no lock on the hot path
        async with self._lock:  # FIFO: one caller at a time waits for the budgets
            while True:
                wait = self.announced_requests.wait_for(1)
                if wait <= 0:
                    wait = self.announced_tokens.wait_for(tokens)
                    if wait > 0 and self.announced_requests.remaining is not None:
                        self.announced_requests.remaining += 1  # not sent: give it back
                if wait <= 0 and self.requests is not None:
                    wait = self.requests.wait_for(1, self.share)
                if wait <= 0 and self.tokens is not None:
                    wait = self.tokens.wait_for(tokens, self.share)
                    if wait > 0 and self.requests is not None:
                        self.requests.level += 1
                if wait <= 0:
                    return
                await asyncio.sleep(wait)

    def observe(self, headers: Mapping[str, str], tokens: int) -> None:
        """Take in a server's ``x-ratelimit-*`` headers (OpenAI's names)."""
        self.announced_requests.observe(
            _int(headers.get("x-ratelimit-limit-requests")),
            _int(headers.get("x-ratelimit-remaining-requests")),
            parse_reset(headers.get("x-ratelimit-reset-requests")),
        )
        self.announced_tokens.observe(
            _int(headers.get("x-ratelimit-limit-tokens")),
            _int(headers.get("x-ratelimit-remaining-tokens")),
            parse_reset(headers.get("x-ratelimit-reset-tokens")),
        )


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
