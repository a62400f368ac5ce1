"""Every key taskgate keeps in a shared Redis, named here once, and the flush of the cache's.

A flush drops the cached reads and nothing else: the write marks, the TTL policy and the rate
buckets live under prefixes that the cache's pattern cannot match (a "-" where it has ":").

`KEYS pattern` walks the whole key space in one command while every other client waits, and
`DEL` frees large values in the foreground. SCAN visits the keys a batch at a time and UNLINK
frees them in the background, so a flush of a big shared Redis stays a series of short steps.
"""

from __future__ import annotations

from redis.asyncio import Redis

# Cached reads: "taskgate:<tool>:<user>:<mark>:<args>" (aiocache's Redis backend adds the ":").
CACHE_NAMESPACE = "taskgate"
CACHE_KEYS = f"{CACHE_NAMESPACE}:*"
# The read-your-writes marks: one hash with no expiry, so volatile-* eviction never drops it.
MARKS_KEY = "taskgate-ryw:marks"
# The operators' TTL policy, shared by every gateway (aiocache adds ":<key>").
POLICY_NAMESPACE = "taskgate-admin"
# One token bucket per user (aiocache adds ":<user>").
RATE_NAMESPACE = "taskgate-rate"
# Each key or prefix a flush must keep.
KEPT_BY_FLUSH = (MARKS_KEY, f"{POLICY_NAMESPACE}:", f"{RATE_NAMESPACE}:")

FLUSH_BATCH = 500  # keys per SCAN step and per UNLINK


async def unlink_matching(client: Redis, pattern: str, batch: int = FLUSH_BATCH) -> int:
    """UNLINK the keys matching `pattern`, `batch` at a time; returns how many were removed."""
    removed = 0
    keys: list[bytes | str] = []
    async for key in client.scan_iter(match=pattern, count=batch):
        keys.append(key)
        if len(keys) >= batch:
            removed += int(await client.unlink(*keys))
            keys.clear()
    if keys:
        removed += int(await client.unlink(*keys))
    return removed
