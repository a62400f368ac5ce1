"""Drop every key under one prefix from a shared Redis without blocking it.

`KEYS pattern` walks the whole key space in one command while every other client waits, and
`DEL` frees large values in the foreground. SCAN visits the keys a batch at a time and UNLINK
frees them in the background, so a flush of a big shared Redis stays a series of short steps.
"""

from __future__ import annotations

from redis.asyncio import Redis

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
