"""Token buckets by key, in a bounded table: sign-ups and client registrations per address, REST
calls per user.

Each key refills at `rate` tokens a second up to `burst`. The table keeps at most `entries`
keys (about 200 bytes each); a key is dropped once it would be full again, or when the table is
full and it is the least recently used, which can only make a limit looser for that key, never
lock anyone out. One table per backend process: behind several backends a caller gets each one's
allowance.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from cachetools import TTLCache

from shared.errors import rate_limited


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class Buckets:
    def __init__(
        self,
        rate: float,
        burst: int,
        entries: int,
        what: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._what = what  # "sign-ups from this address", in the refusal's message
        self._clock = clock
        refill = burst / rate if rate > 0 else 1.0
        self._entries: TTLCache[Hashable, _Bucket] = TTLCache(
            maxsize=entries, ttl=refill, timer=clock
        )

    def take(self, key: Hashable) -> None:
        """Spend one token of `key`'s, or raise `rate_limited` with the wait for the next.
        A rate of 0 turns the limit off."""
        if self._rate <= 0:
            return
        now = self._clock()
        bucket = self._entries.get(key) or _Bucket(float(self._burst), now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self._rate)
        bucket.at = now
        if bucket.tokens < 1:
            self._entries[key] = bucket
            wait = math.ceil((1 - bucket.tokens) / self._rate)
            raise rate_limited(f"too many {self._what}", wait)
        bucket.tokens -= 1
        self._entries[key] = bucket

    def __len__(self) -> int:
        return len(self._entries)
