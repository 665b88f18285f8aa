"""The TTL cache behind API-key and job-status caching."""

from __future__ import annotations

import time

from cgd.ttl_cache import TTLCache


def test_entries_expire_and_pop() -> None:
    cache = TTLCache[str, int](ttl_s=0.05)
    cache.put("a", 1)
    assert cache.get("a") == 1 and cache.get("b") is None
    time.sleep(0.08)
    assert cache.get("a") is None
    cache.put("a", 2)
    cache.pop("a")
    assert cache.get("a") is None


def test_size_is_bounded() -> None:
    cache = TTLCache[int, int](ttl_s=60, max_entries=10)
    for i in range(25):
        cache.put(i, i)
    assert cache.get(24) == 24
    assert sum(cache.get(i) is not None for i in range(25)) <= 10
