"""Write marks in a real Redis: never lowered, never expiring, and a lost store is noticed."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from readmodel.redis_keys import MARKS_KEY
from taskgate.pgpair import PgPair
from tests.support.faults import replay_paused
from tests.support.readmodel import MakeReader, insert_tasks, new_user
from tests.support.redis import RedisServer


async def test_a_lower_mark_never_replaces_a_higher_one_in_redis(
    pg_pair: PgPair, make_reader: MakeReader, redis_server: RedisServer
) -> None:
    user = new_user(pg_pair)
    first = await make_reader(cache_url=redis_server.url)
    second = await make_reader(cache_url=redis_server.url)
    await first.note_write(user, "5/0")
    await second.note_write(user, "4/FFFFFFFF")  # an older write, published late
    assert (await second.marks.mark_for(user)).position >= 5 << 32
    first.marks.local.floor = 0  # only what Redis says, below
    assert (await first.marks.shared.read(user))[1] == 5 << 32  # type: ignore[union-attr]


async def test_marks_live_in_one_hash_without_expiry_and_survive_a_cache_flush(
    pg_pair: PgPair, make_reader: MakeReader, redis_server: RedisServer
) -> None:
    user = new_user(pg_pair)
    reader = await make_reader(cache_url=redis_server.url)
    await reader.get_user_stats(user)
    await reader.note_write(user, "0/10")
    await reader.cache.flush()
    client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        assert await client.type(MARKS_KEY) == b"hash"
        assert await client.ttl(MARKS_KEY) == -1  # no expiry: volatile-* policies never evict it
        assert await client.hexists(MARKS_KEY, str(user))
    finally:
        await client.aclose()
    assert (await reader.marks.shared.read(user))[1] == 0x10  # type: ignore[union-attr]


async def test_a_lost_mark_store_makes_reads_wait_for_the_primary_not_read_as_no_write(
    pg_pair: PgPair, make_reader: MakeReader, redis_server: RedisServer
) -> None:
    user = new_user(pg_pair)
    writer = await make_reader(cache_url=redis_server.url, cache_ttl=0)
    other = await make_reader(cache_url=redis_server.url, cache_ttl=0, ryw_wait_timeout=10)
    assert (await other.get_user_stats(user))["total"] == 0
    # A fresh Redis (this test alone) has no floor yet, and the first read sets one: count from
    # here, whatever earlier tests left in the session's Redis.
    recovered = other.marks.recoveries + writer.marks.recoveries
    with replay_paused(pg_pair):
        await writer.note_write(user, insert_tasks(pg_pair, user, 1))
        client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
        try:
            await client.flushall()  # Redis restarted, or evicted the marks
        finally:
            await client.aclose()
        # The other gateway never saw the mark; the lost store makes it wait for the primary.
        read = asyncio.create_task(other.get_user_stats(user))
        await asyncio.sleep(0.3)
        assert not read.done()
    assert (await read)["total"] == 1
    assert other.marks.recoveries + writer.marks.recoveries == recovered + 1
