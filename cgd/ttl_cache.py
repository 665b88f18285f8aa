"""A small thread-safe cache whose entries expire after a fixed time."""

from __future__ import annotations

import threading
import time
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """Entries are fresh for ``ttl_s``; :meth:`lookup` also hands out an entry up to
    ``stale_s`` past that (for a caller that refreshes it meanwhile)."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000, stale_s: float = 0.0) -> None:
        self.ttl_s = ttl_s
        self.stale_s = stale_s
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        found = self.lookup(key)
        return found[0] if found is not None and found[1] else None

    def lookup(self, key: K) -> tuple[V, bool] | None:
        """(value, still fresh), or None when absent or older than ``ttl_s + stale_s``."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        now = time.monotonic()
        if now >= expires + self.stale_s:
            return None
        return value, now < expires

    def put(self, key: K, value: V) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # crude, but bounded; a miss only costs a query
            self._entries[key] = (time.monotonic() + self.ttl_s, value)

    def pop(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)
