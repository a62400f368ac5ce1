"""Fair shares per user: a token bucket (RATE_LIMIT_PER_USER tokens/s, RATE_LIMIT_BURST deep)
charged by cost, and a cap on calls in flight (RATE_LIMIT_IN_FLIGHT, per gateway).

A call takes one token to be admitted; once it has run, a call that loaded a large page from
the database pays more, by the bytes it loaded (shared.call_cost), so a flood of uncached large
pages runs dry long before a flood of cache hits would. The bucket may go into debt, at most one
burst deep.

With CACHE_URL=redis://... the buckets live in Redis, updated by one Lua script (atomic, on
Redis's clock), so every gateway on that Redis draws on one bucket per user. Otherwise, and for
a short while after a Redis fault, each gateway keeps its own buckets in an LRU of bounded size.
A call over either limit answers `rate_limited` with `details.retry_after_seconds`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

from aiocache.base import BaseCache
from cachetools import LRUCache
from prometheus_client import Counter

from readmodel.redis_keys import RATE_NAMESPACE
from shared.call_cost import CallMeter, metering
from shared.errors import rate_limited
from shared.redis_timing import FAULT_BACKOFF_SECONDS
from shared.settings import Settings

log = logging.getLogger(__name__)

# In-process buckets kept at most: a bucket is ~200 bytes, so this bounds them near 10 MB. One
# evicted is a user idle for longer than the others, whose bucket would be full again anyway.
MAX_LOCAL_BUCKETS = 50_000

# What a database read costs on top of its admission: a token per whole this many bytes it
# loaded. A small read costs its admission only, as a cache hit does; a page of 200 of the
# largest tasks (~1 MB) costs about 128 tokens more.
LOAD_BYTES_PER_TOKEN = 8 * 1024
# What a caller at its in-flight cap is asked to wait: about one uncached read.
IN_FLIGHT_RETRY_AFTER_SECONDS = 0.25

# KEYS[1]: the user's bucket; ARGV: rate (tokens/s), burst, charge. A charge of 0 takes one
# token if there is one; a charge above 0 is paid whatever is left, into debt at most one burst
# deep. Returns {taken, seconds to wait}; the wait is a string: Lua numbers leave as integers.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local charge = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken, wait = 0, 0
if charge > 0 then
  tokens = math.max(-burst, tokens - charge)
  taken = 1
elseif tokens >= 1 then
  tokens = tokens - 1
  taken = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(2 * burst / rate * 1000) + 1000)
return {taken, tostring(wait)}
"""


class Buckets(Protocol):
    async def take(self, user: str) -> float:
        """Take one token from the user's bucket: 0.0, or the seconds until one is there."""
        ...

    async def charge(self, user: str, tokens: float) -> None:
        """Pay `tokens` more for a call that has run, into debt at most one burst deep."""
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

    async def charge(self, user: str, tokens: float) -> None:
        self.charge_now(user, tokens, time.monotonic())

    def charge_now(self, user: str, tokens: float, now: float) -> None:
        bucket = self._buckets.get(user)
        if bucket is None:
            bucket = self._buckets[user] = [float(self.burst), now]
        left = min(self.burst, bucket[0] + max(0.0, now - bucket[1]) * self.rate)
        bucket[0], bucket[1] = max(-float(self.burst), left - tokens), now


class RedisBuckets:
    """Buckets in Redis, one per user, shared by every gateway; local ones while Redis fails."""

    def __init__(self, cache: BaseCache, rate: float, burst: int) -> None:
        self.cache = cache  # aiocache's Redis backend: its client, and its operation timeout
        self.rate = rate
        self.burst = burst
        self.local = LocalBuckets(rate, burst)
        self._down_until = 0.0

    async def take(self, user: str) -> float:
        answer = await self._run(user, 0)
        if answer is None:
            return await self.local.take(user)
        taken, wait = answer
        return 0.0 if taken else wait

    async def charge(self, user: str, tokens: float) -> None:
        if await self._run(user, tokens) is None:
            await self.local.charge(user, tokens)

    async def _run(self, user: str, charge: float) -> tuple[int, float] | None:
        """The script's answer, or None while Redis is failing."""
        if time.monotonic() < self._down_until:
            return None
        key = self.cache.build_key(user, namespace=RATE_NAMESPACE)
        try:
            taken, wait = await self.cache.raw("eval", _TAKE, 1, key, self.rate, self.burst, charge)
        except Exception as exc:  # a Redis fault must not fail calls: limit in process instead
            self._down_until = time.monotonic() + FAULT_BACKOFF_SECONDS
            log.warning("rate limit store failed (%s); limiting in process", type(exc).__name__)
            return None
        return int(taken), float(wait)


def build_buckets(settings: Settings, cache: BaseCache, shared: bool) -> Buckets | None:
    """The buckets for RATE_LIMIT_PER_USER, in Redis when the cache is; None when it is 0."""
    if settings.rate_limit_per_user <= 0:
        return None
    if shared:
        return RedisBuckets(cache, settings.rate_limit_per_user, settings.rate_limit_burst)
    return LocalBuckets(settings.rate_limit_per_user, settings.rate_limit_burst)


def load_cost(meter: CallMeter) -> int:
    """What a call pays after it has run, beyond its admission: the bytes it loaded."""
    return meter.loaded_bytes // LOAD_BYTES_PER_TOKEN


class InFlight:
    """Calls running per user in this gateway; a user appears only while one runs."""

    def __init__(self, cap: int) -> None:
        self.cap = cap  # 0: no cap
        self._running: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._running)

    def enter(self, user: str) -> bool:
        running = self._running.get(user, 0)
        if self.cap and running >= self.cap:
            return False
        self._running[user] = running + 1
        return True

    def leave(self, user: str) -> None:
        running = self._running.pop(user, 1) - 1
        if running > 0:
            self._running[user] = running


class CallLimits:
    """The per-user limits at the gateway's edge, before a call does any work."""

    def __init__(
        self, settings: Settings, buckets: Callable[[], Buckets | None], refused: Counter
    ) -> None:
        self.settings = settings
        self.buckets = buckets  # the running gateway's, opened with its runtime
        self.refused = refused  # taskgate_rate_limited_total{tool}
        # RATE_LIMIT_PER_USER=0 turns the per-user limits off: the cap in flight too.
        limited = settings.rate_limit_per_user > 0
        self.in_flight = InFlight(settings.rate_limit_in_flight if limited else 0)

    @asynccontextmanager
    async def admitted(self, label: str, user: str | None) -> AsyncIterator[None]:
        """Run the block as a call of `user` (the call gate's resolved caller; None: the
        process's configured one, not limited), or raise rate_limited: too many of the user's
        calls running here, or an empty bucket. Charges the block's database reads after it."""
        if user is None:
            yield
            return
        if not self.in_flight.enter(user):
            self.refused.labels(label).inc()
            raise rate_limited(
                f"too many calls at once: at most {self.in_flight.cap} per user",
                IN_FLIGHT_RETRY_AFTER_SECONDS,
                "in_flight_limit",
            )
        try:
            buckets = self.buckets()
            if buckets is not None:
                await self._take(buckets, label, user)
            with metering() as meter:
                try:
                    yield
                finally:
                    cost = load_cost(meter)
                    if buckets is not None and cost > 0:
                        await buckets.charge(user, cost)
        finally:
            self.in_flight.leave(user)

    async def _take(self, buckets: Buckets, label: str, user: str) -> None:
        wait = await buckets.take(user)
        if wait <= 0:
            return
        self.refused.labels(label).inc()
        raise rate_limited(
            f"too many calls: at most {self.settings.rate_limit_per_user:g} tokens per second "
            f"(bursts of {self.settings.rate_limit_burst}; an uncached read costs more)",
            wait,
            "per_user_limit",
        )
