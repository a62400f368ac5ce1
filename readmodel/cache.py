"""The read cache: aiocache (memory or Redis, by CACHE_URL), keyed per user, tool and arguments.

Values are JSON-safe data. Redis gets JsonSerializer, never pickle, because a shared Redis
must not be a way to run code in every gateway. Cache faults degrade to direct reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiocache import Cache
from aiocache.backends.redis import RedisCache
from aiocache.base import BaseCache
from aiocache.serializers import JsonSerializer

log = logging.getLogger(__name__)

# Keys read "taskgate:<tool>:<user>:<mark>:<args>" (aiocache's Redis backend adds the ":").
NAMESPACE = "taskgate"
# After a cache fault, values skip the cache this long, so a hung Redis costs one timeout,
# not one per operation per read.
FAULT_BACKOFF_SECONDS = 2.0


def build_cache(url: str, op_timeout: float = 0.5) -> BaseCache:
    cache: BaseCache = Cache.from_url(url)
    # Only a network cache can hang. In memory the bound buys nothing, and aiocache enforces it
    # with asyncio.wait_for, a task per operation: ~3% of a cached read's CPU in the bench profile.
    cache.timeout = op_timeout if is_redis(url) else None
    if is_redis(url):
        cache.serializer = JsonSerializer()
    cache.namespace = NAMESPACE if is_redis(url) else NAMESPACE + ":"
    return cache


def is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://"))


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
        self.loads = 0  # misses that reached the database; the rest joined a load in flight

    def as_dict(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "errors": self.errors,
            "loads": self.loads,
        }


class ReadCache:
    """Cache-aside with stampede protection; every backend fault is logged and read through.

    Stampede protection is a single flight per key in this process: concurrent misses on one
    key share one load and its result. It is not aiocache's RedLock because RedLock's waiters
    re-read the cache after the holder releases, so when Redis refuses the set every waiter
    queries anyway; and its wait is per process too (the release event lives in memory).
    Across N gateways one key costs at most N loads.
    """

    def __init__(self, cache: BaseCache, ttl: TtlPolicy) -> None:
        self.cache = cache
        self.ttl = ttl
        self.stats = CacheStats()
        self.shared = isinstance(cache, RedisCache)
        self._in_flight: dict[str, asyncio.Task[Any]] = {}
        self._down_until = 0.0
        self._last_fault_log = 0.0

    def _fault(self, what: str, exc: BaseException) -> None:
        self.stats.errors += 1
        now = time.monotonic()
        self._down_until = now + FAULT_BACKOFF_SECONDS
        if now - self._last_fault_log > 10:  # one line per 10 s, not one per request
            self._last_fault_log = now
            log.warning("cache %s failed (%s); reading through", what, type(exc).__name__)

    def _backing_off(self) -> bool:
        return time.monotonic() < self._down_until

    @property
    def reachable(self) -> bool:
        """False for a short while after a fault: the cache is being skipped."""
        return not self._backing_off()

    async def get_or_load(self, tool: str, key: str, load: Callable[[], Awaitable[Any]]) -> Any:
        ttl = self.ttl.ttl_for(tool)
        if ttl <= 0:
            self.stats.loads += 1
            return await load()
        value = await self._get(key)
        if value is not None:
            self.stats.hits += 1
            return value
        self.stats.misses += 1
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load_and_store(key, load, ttl))
            self._in_flight[key] = task
            task.add_done_callback(lambda done: self._landed(key, done))
        # Shielded: a caller that gives up does not cancel the load the others wait for.
        return await asyncio.shield(task)

    async def _load_and_store(
        self, key: str, load: Callable[[], Awaitable[Any]], ttl: float
    ) -> Any:
        self.stats.loads += 1
        value = await load()
        await self._set(key, value, ttl)
        return value

    def _landed(self, key: str, task: asyncio.Task[Any]) -> None:
        if self._in_flight.get(key) is task:
            del self._in_flight[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so a load nobody awaits any more is not logged

    async def _get(self, key: str, namespace: str | None = None) -> Any:
        if self._backing_off():
            return None
        try:
            return await self.cache.get(key, namespace=namespace)
        except Exception as exc:  # any backend fault must degrade to a direct read
            self._fault("get", exc)
            return None

    async def _set(self, key: str, value: Any, ttl: float, namespace: str | None = None) -> None:
        if self._backing_off():
            return
        try:
            await self.cache.set(key, value, ttl=ttl, namespace=namespace)
        except Exception as exc:
            self._fault("set", exc)

    async def flush(self) -> None:
        # The cache's own namespace: Redis clears "taskgate:*", memory keys starting
        # "taskgate:". Other namespaces stay: the TTL policy's, and the write marks
        # (readmodel.marks, not in the cache at all).
        await self.cache.clear(namespace=self.cache.namespace)

    async def close(self) -> None:
        try:
            await self.cache.close()
        except Exception as exc:
            self._fault("close", exc)
