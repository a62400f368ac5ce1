"""The read cache: aiocache (memory or Redis, by CACHE_URL), keyed per user, tool and arguments.

Values are JSON-safe data. Redis gets JsonSerializer, never pickle, because a shared Redis
must not be a way to run code in every gateway. Cache faults degrade to direct reads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiocache import Cache
from aiocache.base import BaseCache
from aiocache.lock import RedLock
from aiocache.serializers import JsonSerializer

log = logging.getLogger(__name__)

NAMESPACE = "taskgate:"
# Write marks must outlive every cached entry they guard.
MARK_TTL_SECONDS = 86_400


def build_cache(url: str, op_timeout: float = 0.5) -> BaseCache:
    cache: BaseCache = Cache.from_url(url)
    cache.timeout = op_timeout
    if url.startswith(("redis://", "rediss://")):
        cache.serializer = JsonSerializer()
    cache.namespace = NAMESPACE
    return cache


class TtlPolicy:
    """The cache TTL in seconds, global and per tool. Operators change it at run time."""

    def __init__(self, default: float, overrides: dict[str, float] | None = None) -> None:
        self.default = default
        self.overrides = dict(overrides or {})

    def ttl_for(self, tool: str) -> float:
        return self.overrides.get(tool, self.default)

    def as_dict(self) -> dict[str, Any]:
        return {"cache_ttl": self.default, "overrides": dict(self.overrides)}


class CacheStats:
    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.errors = 0

    def as_dict(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "errors": self.errors}


class ReadCache:
    """Cache-aside with stampede protection; every backend fault is logged and read through."""

    def __init__(self, cache: BaseCache, ttl: TtlPolicy, lock_lease: float) -> None:
        self.cache = cache
        self.ttl = ttl
        self.stats = CacheStats()
        self._lease = lock_lease
        self._last_fault_log = 0.0

    def _fault(self, what: str, exc: BaseException) -> None:
        self.stats.errors += 1
        now = time.monotonic()
        if now - self._last_fault_log > 10:  # one line per 10 s, not one per request
            self._last_fault_log = now
            log.warning("cache %s failed (%s); reading through", what, type(exc).__name__)

    async def get_or_load(self, tool: str, key: str, load: Callable[[], Awaitable[Any]]) -> Any:
        ttl = self.ttl.ttl_for(tool)
        if ttl <= 0:
            return await load()
        value = await self._get(key)
        if value is not None:
            self.stats.hits += 1
            return value
        self.stats.misses += 1
        # Concurrent misses on one key in this process wait for the first to fill it.
        lock = RedLock(self.cache, key, lease=self._lease)
        try:
            await lock.__aenter__()
        except Exception as exc:  # no lock, no stampede protection: still answer
            self._fault("lock", exc)
            return await load()
        try:
            value = await self._get(key)
            if value is None:
                value = await load()
                await self._set(key, value, ttl)
            return value
        finally:
            try:
                await lock.__aexit__(None, None, None)
            except Exception as exc:
                self._fault("unlock", exc)

    async def _get(self, key: str) -> Any:
        try:
            return await self.cache.get(key)
        except Exception as exc:  # any backend fault must degrade to a direct read
            self._fault("get", exc)
            return None

    async def _set(self, key: str, value: Any, ttl: float) -> None:
        try:
            await self.cache.set(key, value, ttl=ttl)
        except Exception as exc:
            self._fault("set", exc)

    async def get_mark(self, user_id: int) -> str | None:
        value = await self._get(f"mark:{user_id}")
        return value if isinstance(value, str) else None

    async def set_mark(self, user_id: int, lsn: str) -> None:
        await self._set(f"mark:{user_id}", lsn, MARK_TTL_SECONDS)

    async def flush(self) -> None:
        await self.cache.clear(namespace=NAMESPACE)

    async def close(self) -> None:
        try:
            await self.cache.close()
        except Exception as exc:
            self._fault("close", exc)
