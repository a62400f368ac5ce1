"""The read cache: aiocache (memory or Redis, by CACHE_URL), keyed per user, tool and arguments.

Values are JSON-safe data, cached as their encoded JSON bytes: never pickle, because a shared
Redis must not be a way to run code in every gateway, and bytes have an exact size, so memory
is bounded in bytes whatever the callers ask for. In memory the entries sit in an LRU with a
byte budget (CACHE_MAX_BYTES); anywhere, a page over CACHE_MAX_ENTRY_BYTES is served but not
cached. Cache faults degrade to direct reads.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic_core
from aiocache import Cache
from aiocache.backends.redis import RedisCache
from aiocache.base import BaseCache
from aiocache.serializers import JsonSerializer, NullSerializer
from cachetools import TLRUCache

from readmodel.redis_keys import CACHE_KEYS, CACHE_NAMESPACE, unlink_matching
from shared.call_cost import note_load
from shared.redis_timing import FAULT_BACKOFF_SECONDS, REDIS_OP_TIMEOUT_SECONDS
from shared.settings import CACHE_MAX_BYTES_DEFAULT, CACHE_MAX_ENTRY_BYTES_DEFAULT

log = logging.getLogger(__name__)

# What an in-memory entry costs beyond its key and value bytes: object headers, the LRU's dict
# slots, its expiry heap item and the value's holder; tracemalloc shows ~370 on CPython 3.11.
ENTRY_OVERHEAD_BYTES = 512


def build_cache(
    url: str, op_timeout: float = REDIS_OP_TIMEOUT_SECONDS, max_bytes: int = CACHE_MAX_BYTES_DEFAULT
) -> BaseCache:
    """memory:// (this process, at most `max_bytes`) or redis://... (shared by gateways)."""
    if not is_redis(url):
        if not url.startswith("memory://"):
            raise ValueError("CACHE_URL must be memory:// or redis://...")
        return BoundedMemoryCache(max_bytes, namespace=CACHE_NAMESPACE + ":")
    cache: BaseCache = Cache.from_url(url)
    # Only a network cache can hang, so only Redis gets an operation timeout (BoundedMemoryCache
    # has none: aiocache's wait_for is a task per operation, ~3% of a cached read's CPU).
    cache.timeout = op_timeout
    cache.serializer = JsonSerializer()
    cache.namespace = CACHE_NAMESPACE
    return cache


def is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://"))


def encode_entry(value: Any) -> bytes:
    """A cached value as the bytes the cache holds: compact UTF-8 JSON."""
    return pydantic_core.to_json(value)


def decode_entry(stored: bytes | str | None) -> Any:
    return None if stored is None else pydantic_core.from_json(stored)


def _stored_as_is(value: bytes) -> bytes:
    return value


class _Held:
    """One in-memory entry: the value, when it expires, and what it costs in bytes."""

    __slots__ = ("charge", "expires", "value")

    def __init__(self, value: Any, expires: float, charge: int) -> None:
        self.value = value
        self.expires = expires
        self.charge = charge


def _charge(key: str, value: Any) -> int:
    if isinstance(value, str):
        value = value.encode()
    body = value if isinstance(value, bytes) else encode_entry(value)
    return len(body) + len(key.encode()) + ENTRY_OVERHEAD_BYTES


class BoundedMemoryCache(BaseCache):  # type: ignore[misc]
    """aiocache's in-process backend, as an LRU of at most `max_bytes` (cachetools' TLRUCache).

    Cached reads arrive as encoded bytes (ReadCache), so an entry's charge is its exact size
    plus the key and a fixed overhead. The least recently used entries go first when a new one
    does not fit; an expired entry goes at the next write or when it is read.
    """

    NAME = "memory"

    def __init__(self, max_bytes: int, **kwargs: Any) -> None:
        super().__init__(serializer=NullSerializer(), timeout=None, **kwargs)
        self.max_bytes = max_bytes
        self._entries: TLRUCache[str, _Held] = TLRUCache(
            maxsize=max_bytes,
            ttu=lambda _key, held, _now: held.expires,
            timer=time.monotonic,
            getsizeof=lambda held: held.charge,
        )

    @property
    def used_bytes(self) -> int:
        self._entries.expire()
        return int(self._entries.currsize)

    def __len__(self) -> int:
        self._entries.expire()
        return len(self._entries)

    async def _get(self, key: str, encoding: str | None = "utf-8", _conn: Any = None) -> Any:
        return self.held(key)

    def held(self, key: str) -> Any:
        """The value under a built key, or None; what ReadCache reads on every call."""
        held = self._entries.get(key)
        return None if held is None else held.value

    async def _multi_get(self, keys: list[str], encoding: str = "utf-8", _conn: Any = None) -> Any:
        return [await self._get(key) for key in keys]

    async def _set(
        self,
        key: str,
        value: Any,
        ttl: float | None = None,
        _cas_token: Any = None,
        _conn: Any = None,
    ) -> bool:
        expires = time.monotonic() + ttl if ttl else math.inf
        charge = _charge(key, value)
        if charge > self.max_bytes:  # would empty the whole cache for one value: not kept
            self._entries.pop(key, None)
            return False
        self._entries[key] = _Held(value, expires, charge)
        return True

    async def _add(self, key: str, value: Any, ttl: float | None = None, _conn: Any = None) -> bool:
        if key in self._entries:
            raise ValueError(f"Key {key} already exists, use .set to update the value")
        return await self._set(key, value, ttl)

    async def _exists(self, key: str, _conn: Any = None) -> bool:
        return key in self._entries

    async def _delete(self, key: str, _conn: Any = None) -> int:
        return 0 if self._entries.pop(key, None) is None else 1

    async def _clear(self, namespace: str | None = None, _conn: Any = None) -> bool:
        if namespace:
            for key in [k for k in self._entries if k.startswith(namespace)]:
                self._entries.pop(key, None)
        else:
            self._entries.clear()
        return True

    async def _close(self, *args: Any, _conn: Any = None, **kwargs: Any) -> None:
        self._entries.clear()


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
        self.oversize = 0  # loads served but not cached: over CACHE_MAX_ENTRY_BYTES

    def as_dict(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "errors": self.errors,
            "loads": self.loads,
            "oversize": self.oversize,
        }


class ReadCache:
    """Cache-aside with stampede protection; every backend fault is logged and read through.

    Stampede protection is a single flight per key in this process: concurrent misses on one
    key share one load and its result. It is not aiocache's RedLock because RedLock's waiters
    re-read the cache after the holder releases, so when Redis refuses the set every waiter
    queries anyway; and its wait is per process too (the release event lives in memory).
    Across N gateways one key costs at most N loads.
    """

    def __init__(
        self, cache: BaseCache, ttl: TtlPolicy, max_entry_bytes: int = CACHE_MAX_ENTRY_BYTES_DEFAULT
    ) -> None:
        self.cache = cache
        self.ttl = ttl
        self.max_entry_bytes = max_entry_bytes
        self.stats = CacheStats()
        self.shared = isinstance(cache, RedisCache)
        # In this process a read is a dict look-up: asked directly, without aiocache's wrappers
        # around get() (an environment read, plugin hooks, a debug log call and two clock reads
        # per call cost more than the look-up: 5.7 against 2.3 us, in-process).
        self._memory = cache if isinstance(cache, BoundedMemoryCache) else None
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
            note_load(0)
            return await load()
        value = await self._get(key, loads_fn=decode_entry)
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

    async def peek(self, tool: str, key: str) -> bytes | None:
        """The bytes cached under `key`, or None; never loads, and counts nothing: the caller
        counts a hit it serves (count_hit), and a miss goes on to get_or_load, which counts it."""
        if self.ttl.ttl_for(tool) <= 0:
            return None
        stored = await self._get(key, loads_fn=_stored_as_is)
        if stored is None:
            return None
        return stored.encode() if isinstance(stored, str) else bytes(stored)

    def count_hit(self) -> None:
        self.stats.hits += 1

    async def _load_and_store(
        self, key: str, load: Callable[[], Awaitable[Any]], ttl: float
    ) -> Any:
        self.stats.loads += 1
        value = await load()
        stored = encode_entry(value)
        note_load(len(stored))  # the call that started the load pays for it
        if len(stored) > self.max_entry_bytes:
            self.stats.oversize += 1  # served, not cached: one page must not crowd out the rest
        else:
            await self._set(key, stored, ttl, dumps_fn=_stored_as_is)
        return value

    def _landed(self, key: str, task: asyncio.Task[Any]) -> None:
        if self._in_flight.get(key) is task:
            del self._in_flight[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so a load nobody awaits any more is not logged

    async def _get(
        self,
        key: str,
        namespace: str | None = None,
        loads_fn: Callable[[Any], Any] | None = None,
    ) -> Any:
        if self._memory is not None:
            value = self._memory.held(self._memory.build_key(key, namespace=namespace))
            return value if loads_fn is None else loads_fn(value)
        if self._backing_off():
            return None
        try:
            return await self.cache.get(key, namespace=namespace, loads_fn=loads_fn)
        except Exception as exc:  # any backend fault must degrade to a direct read
            self._fault("get", exc)
            return None

    async def _set(
        self,
        key: str,
        value: Any,
        ttl: float,
        namespace: str | None = None,
        dumps_fn: Callable[[Any], Any] | None = None,
    ) -> None:
        if self._backing_off():
            return
        try:
            await self.cache.set(key, value, ttl=ttl, namespace=namespace, dumps_fn=dumps_fn)
        except Exception as exc:
            self._fault("set", exc)

    async def flush(self) -> None:
        # The cache's own keys only (readmodel.redis_keys keeps the marks, policy and buckets).
        if isinstance(self.cache, RedisCache):
            # Not aiocache's clear(): it runs KEYS, which blocks a big shared Redis.
            await unlink_matching(self.cache.client, CACHE_KEYS)
            return
        await self.cache.clear(namespace=self.cache.namespace)

    async def close(self) -> None:
        try:
            await self.cache.close()
        except Exception as exc:
            self._fault("close", exc)
