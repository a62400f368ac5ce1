"""Bounds on the real replica: keys from decoded cursors, the entry cap in Redis, and overload."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from sqlalchemy import text

from readmodel.cache import ReadCache, TtlPolicy, build_cache
from readmodel.engine import create_read_engine
from readmodel.redis_keys import CACHE_NAMESPACE
from shared.errors import ErrorCode, TaskgateError
from shared.settings import Settings
from taskgate.pgpair import PgPair
from tests.support.readmodel import (
    MakeReader,
    QueryCounter,
    TaskReader,
    one_replica,
    user_with_tasks,
)
from tests.support.redis import RedisServer


async def test_spellings_of_one_cursor_share_one_cache_entry(
    pg_pair: PgPair, make_reader: MakeReader, cache_url: str
) -> None:
    user = user_with_tasks(pg_pair, 6)
    reader = await make_reader(cache_url=cache_url)
    cursor = (await reader.list_tasks(user, "all", 2, None))["next_cursor"]
    assert cursor is not None
    counter = QueryCounter(reader.replica)

    # The decoder is lenient: padding and characters outside the alphabet decode the same.
    spellings = [cursor, cursor + "====", cursor + "=", f"{cursor[:5]}~~~{cursor[5:]}"]
    pages = [await reader.list_tasks(user, "all", 2, spelling) for spelling in spellings]

    assert all(page == pages[0] for page in pages)
    assert counter.selects_from_tasks() == 1
    assert reader.cache.stats.loads == 2  # the first page, then the second once


async def test_a_page_over_the_entry_cap_is_not_stored_in_redis(
    pg_pair: PgPair, make_reader: MakeReader, redis_server: RedisServer
) -> None:
    user = user_with_tasks(pg_pair, 40)
    reader = await make_reader(cache_url=redis_server.url)
    reader.cache.max_entry_bytes = 2_000
    counter = QueryCounter(reader.replica)

    big = [await reader.list_tasks(user, "all", 40, None) for _ in range(2)]
    small = [await reader.list_tasks(user, "all", 1, None) for _ in range(2)]

    assert big[0] == big[1] and len(big[0]["tasks"]) == 40
    assert small[0] == small[1]
    assert counter.selects_from_tasks() == 3  # the big page twice, the small one once
    assert reader.cache.stats.oversize == 2
    client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        keys = await client.keys(f"{CACHE_NAMESPACE}:list_tasks:{user}:*")
    finally:
        await client.aclose()
    assert len(keys) == 1, keys  # only the small page


async def test_a_read_that_waits_past_the_pool_bound_is_rate_limited_not_unavailable(
    pg_pair: PgPair, settings: Settings
) -> None:
    user = user_with_tasks(pg_pair, 1)
    tiny = settings.model_copy(
        update={"db_pool_size": 1, "db_max_overflow": 0, "read_pool_timeout": 0.2}
    )
    replica = create_read_engine(tiny, tiny.read_database_url)
    reader = TaskReader(
        one_replica(replica),
        ReadCache(build_cache("memory://"), TtlPolicy(0)),
        cursor_secret=b"secret",
        ryw_wait_timeout=1.0,
        replica_timeout=1.5,
    )

    held, release = asyncio.Event(), asyncio.Event()

    async def hold_the_only_connection() -> None:  # until every read has given up
        async with replica.connect() as conn:
            await conn.execute(text("SELECT 1"))
            held.set()
            await release.wait()

    try:
        holder = asyncio.create_task(hold_the_only_connection())
        await held.wait()
        results = await asyncio.gather(
            *(reader.get_user_stats(user) for _ in range(5)), return_exceptions=True
        )
        release.set()
        await holder
        after = await reader.get_user_stats(user)  # the slot is free again: served
    finally:
        await replica.dispose()

    assert all(isinstance(r, TaskgateError) for r in results), results
    errors = [r for r in results if isinstance(r, TaskgateError)]
    assert {e.code for e in errors} == {ErrorCode.RATE_LIMITED}
    assert all(e.details["retry_after_seconds"] > 0 for e in errors)
    assert all("overloaded" in e.message for e in errors)
    assert reader.stats.pool_timeouts == 5 and reader.stats.replica_errors == 0
    assert after == {"total": 1, "completed": 0, "pending": 1}
