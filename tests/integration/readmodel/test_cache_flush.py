"""Flushing the shared cache on a real Redis: only cached reads go, in batches, never with KEYS."""

from __future__ import annotations

import redis.asyncio as aioredis

from readmodel.cache import ReadCache, TtlPolicy, build_cache
from readmodel.marks import RedisMarks
from readmodel.redis_keys import CACHE_NAMESPACE, FLUSH_BATCH, KEPT_BY_FLUSH, MARKS_KEY
from tests.support.redis import running_redis

CACHED_KEYS = 2 * FLUSH_BATCH + 37  # more than two batches


async def test_flush_unlinks_cached_reads_in_batches_and_keeps_every_other_key() -> None:
    with running_redis() as server:
        client = aioredis.Redis.from_url(server.url)
        cache = ReadCache(build_cache(server.url), TtlPolicy(30))
        marks = RedisMarks.from_url(server.url)
        try:
            async with client.pipeline(transaction=False) as pipe:
                for i in range(CACHED_KEYS):
                    pipe.set(f"{CACHE_NAMESPACE}:list_tasks:{i}:0:{{}}", "[]", ex=60)
                await pipe.execute()
            await marks.raise_floor(0x1000)
            await marks.raise_mark(7, 0x1234)
            # A key under each other prefix taskgate keeps in Redis, and someone else's.
            others = [f"{prefix}kept" for prefix in KEPT_BY_FLUSH if prefix.endswith(":")]
            for key in [*others, "someone-else:key"]:
                await client.set(key, "{}")
            await client.config_resetstat()

            await cache.flush()

            stats = await client.info("commandstats")  # before this test's own listing
            remaining = sorted([k.decode() async for k in client.scan_iter()])
            assert remaining == sorted([MARKS_KEY, *others, "someone-else:key"])
            assert len(others) == len(KEPT_BY_FLUSH) - 1  # all but the marks' hash
            assert "cmdstat_keys" not in stats, "KEYS blocks a shared Redis"
            assert "cmdstat_del" not in stats
            assert stats["cmdstat_unlink"]["calls"] >= CACHED_KEYS // FLUSH_BATCH
            assert stats["cmdstat_scan"]["calls"] >= 2
        finally:
            await cache.close()
            await marks.close()
            await client.aclose()
