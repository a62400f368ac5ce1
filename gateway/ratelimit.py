"""Tool calls per user: a token bucket (RATE_LIMIT_PER_USER calls/s, RATE_LIMIT_BURST deep).

With CACHE_URL=redis://... the buckets live in Redis, updated by one Lua script (atomic, on
Redis's clock), so every gateway on that Redis draws on one bucket per user. Otherwise, and for
a short while after a Redis fault, each gateway keeps its own buckets in an LRU of bounded size.
A call over the limit answers `rate_limited` with `details.retry_after_seconds`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

from aiocache.base import BaseCache
from cachetools import LRUCache
from prometheus_client import Counter

from shared.errors import ErrorCode, TaskgateError
from shared.settings import Settings

log = logging.getLogger(__name__)

# In-process buckets kept at most: a bucket is ~200 bytes, so this bounds them near 10 MB. One
# evicted is a user idle for longer than the others, whose bucket would be full again anyway.
MAX_LOCAL_BUCKETS = 50_000
BUCKET_NAMESPACE = "taskgate-rate"
# After a Redis fault, buckets are kept in process this long: one timeout, not one per call.
FAULT_BACKOFF_SECONDS = 2.0

# KEYS[1]: the user's bucket; ARGV: rate (tokens/s), burst. Returns {taken, seconds to wait}.
# The wait is a string: Lua numbers leave a script as integers.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {taken, tostring(wait)}
"""


class Buckets(Protocol):
    async def take(self, user: str) -> float:
        """Take one token from the user's bucket: 0.0, or the seconds until one is there."""
        ...


class LocalBuckets:
    """This process's buckets, the least recently used dropped past `max_users`."""

    def __init__(self, rate: float, burst: int, max_users: int = MAX_LOCAL_BUCKETS) -> None:
        self.rate = rate
        self.burst = burst
        # user -> [tokens, when last refilled]
        self._buckets: LRUCache[str, list[float]] = LRUCache(maxsize=max_users)

    def __len__(self) -> int:
        return len(self._buckets)

    async def take(self, user: str) -> float:
        return self.take_now(user, time.monotonic())

    def take_now(self, user: str, now: float) -> float:
        bucket = self._buckets.get(user)
        if bucket is None:
            bucket = self._buckets[user] = [float(self.burst), now]
        tokens = min(self.burst, bucket[0] + max(0.0, now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1:
            bucket[0] = tokens - 1
            return 0.0
        bucket[0] = tokens
        return (1 - tokens) / self.rate


class RedisBuckets:
    """Buckets in Redis, one per user, shared by every gateway; local ones while Redis fails."""

    def __init__(self, cache: BaseCache, rate: float, burst: int) -> None:
        self.cache = cache  # aiocache's Redis backend: its client, and its operation timeout
        self.rate = rate
        self.burst = burst
        self.local = LocalBuckets(rate, burst)
        self._down_until = 0.0

    async def take(self, user: str) -> float:
        if time.monotonic() < self._down_until:
            return await self.local.take(user)
        key = self.cache.build_key(user, namespace=BUCKET_NAMESPACE)
        try:
            taken, wait = await self.cache.raw("eval", _TAKE, 1, key, self.rate, self.burst)
        except Exception as exc:  # a Redis fault must not fail calls: limit in process instead
            self._down_until = time.monotonic() + FAULT_BACKOFF_SECONDS
            log.warning("rate limit store failed (%s); limiting in process", type(exc).__name__)
            return await self.local.take(user)
        return 0.0 if int(taken) else float(wait)


def build_buckets(settings: Settings, cache: BaseCache, shared: bool) -> Buckets | None:
    """The buckets for RATE_LIMIT_PER_USER, in Redis when the cache is; None when it is 0."""
    if settings.rate_limit_per_user <= 0:
        return None
    if shared:
        return RedisBuckets(cache, settings.rate_limit_per_user, settings.rate_limit_burst)
    return LocalBuckets(settings.rate_limit_per_user, settings.rate_limit_burst)


class CallLimits:
    """The per-user limit at the gateway's edge, before a tool does any work."""

    def __init__(
        self, settings: Settings, buckets: Callable[[], Buckets | None], refused: Counter
    ) -> None:
        self.settings = settings
        self.buckets = buckets  # the running gateway's, opened with its runtime
        self.refused = refused  # taskgate_rate_limited_total{tool}

    async def admit(self, tool: str, user: str | None) -> None:
        """Return if `user` (the call gate's resolved caller; None: the process's configured
        one) may call now, else raise rate_limited."""
        buckets = self.buckets()
        if buckets is None or user is None:
            return
        wait = await buckets.take(user)
        if wait <= 0:
            return
        self.refused.labels(tool).inc()
        retry_after = math.ceil(wait * 1000) / 1000
        raise TaskgateError(
            ErrorCode.RATE_LIMITED,
            f"too many calls: at most {self.settings.rate_limit_per_user:g} per second "
            f"(bursts of {self.settings.rate_limit_burst}); retry after {retry_after:g} s",
            {"retry_after_seconds": retry_after, "reason": "per_user_limit"},
        )
