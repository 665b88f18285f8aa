"""One retry policy for every HTTP client in the project (LLM calls and the team client).

Built on tenacity so the loop itself (attempt counting, stop conditions, sleeping) is a
maintained library's; what is ours is the policy: which failures are transient, full-jitter
exponential backoff, and a server's ``Retry-After`` (delta-seconds or HTTP-date) as a floor on
the wait. A ``Retry-After`` longer than ``retry_after_max_s`` stops the retries at once: waiting
that long would stall a worker, and failing lets the caller decide.

A retryable failure is an exception carrying ``retryable`` (bool) and ``retry_after_s``
(float | None) attributes: :class:`Transient` is the plain one.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import tenacity


class Transient(Exception):
    """A failure worth repeating; ``retry_after_s`` is the server's requested wait, if any."""

    retryable = True

    def __init__(self, message: str = "", retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def plain_seconds(value: str) -> float | None:
    """A header's plain number of seconds (never negative); None when it is not a number."""
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    seconds = plain_seconds(value)
    if seconds is not None:
        return seconds
    value = value.strip()
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now_ts = time.time() if now is None else now
    return max(0.0, when.timestamp() - now_ts)


def _retry_after(exc: BaseException | None) -> float | None:
    value = getattr(exc, "retry_after_s", None)
    return float(value) if value is not None else None


def _retryable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retryable", False))


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts, backoff and the ``Retry-After`` cap; build loops with :meth:`retrying`."""

    max_attempts: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 300.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Wait after failed attempt ``attempt`` (1-based): full jitter, never under Retry-After."""
        cap = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        delay = self.rng.uniform(0.0, cap)
        return max(delay, retry_after_s) if retry_after_s is not None else delay

    def too_long(self, exc: BaseException | None) -> bool:
        """Whether the server asked for a wait longer than this policy accepts."""
        wait = _retry_after(exc)
        return wait is not None and wait > self.retry_after_max_s

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return self.delay(state.attempt_number, _retry_after(exc))

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        return state.attempt_number >= self.max_attempts or self.too_long(exc)

    def _kwargs(
        self,
        retry_if: Callable[[BaseException], bool] | None,
        before_sleep: Callable[[tenacity.RetryCallState], Any] | None,
        sleep: Callable[[float], Any] | None,
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "stop": self._stop,
            "wait": self._wait,
            "retry": tenacity.retry_if_exception(retry_if or _retryable),
            "reraise": True,  # the caller sees its own last exception, never a RetryError
        }
        if before_sleep is not None:
            kwargs["before_sleep"] = before_sleep
        if sleep is not None:
            kwargs["sleep"] = sleep
        return kwargs

    def retrying(
        self,
        retry_if: Callable[[BaseException], bool] | None = None,
        before_sleep: Callable[[tenacity.RetryCallState], Any] | None = None,
        sleep: Callable[[float], Any] | None = None,
    ) -> tenacity.Retrying:
        """A synchronous loop: ``for attempt in policy.retrying(): with attempt: ...``."""
        return tenacity.Retrying(**self._kwargs(retry_if, before_sleep, sleep))

    def async_retrying(
        self,
        retry_if: Callable[[BaseException], bool] | None = None,
        before_sleep: Callable[[tenacity.RetryCallState], Any] | None = None,
    ) -> tenacity.AsyncRetrying:
        """The asyncio loop: ``async for attempt in policy.async_retrying(): with attempt:``."""
        return tenacity.AsyncRetrying(**self._kwargs(retry_if, before_sleep, None))
