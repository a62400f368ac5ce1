"""The read cache on the real replica: stampedes, TTLs, per-user invalidation, Redis faults."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from readmodel.redis_keys import CACHE_NAMESPACE
from taskgate.pgpair import PgPair
from tests.support.readmodel import (
    MakeReader,
    QueryCounter,
    TaskReader,
    insert_tasks,
    new_user,
    user_with_tasks,
    wait_replayed,
)
from tests.support.redis import RedisServer, running_redis
from tests.support.waiting import eventually


def hold_loads_until_misses(
    reader: TaskReader, misses: int, monkeypatch: pytest.MonkeyPatch
) -> set[str]:
    """Holds each load until `misses` callers have missed, so all of them overlap it however a
    busy machine orders them (a Redis get that times out comes back after a quick load lands).
    Returns the keys the callers asked for, filled in as they ask."""
    get_or_load = reader.cache.get_or_load
    keys: set[str] = set()

    async def held_get_or_load(tool: str, key: str, load: Callable[[], Awaitable[Any]]) -> Any:
        keys.add(key)

        async def held() -> Any:
            await eventually(lambda: reader.cache.stats.misses >= misses, f"{misses} misses")
            return await load()

        return await get_or_load(tool, key, held)

    monkeypatch.setattr(reader.cache, "get_or_load", held_get_or_load)
    return keys


async def test_hundred_concurrent_misses_on_one_key_cause_one_query(
    pg_pair: PgPair, make_reader: MakeReader, cache_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = user_with_tasks(pg_pair, 3)
    reader = await make_reader(cache_url=cache_url)
    counter = QueryCounter(reader.replica)
    keys = hold_loads_until_misses(reader, 100, monkeypatch)

    pages = await asyncio.gather(*(reader.list_tasks(user, "all", 50, None) for _ in range(100)))

    # One query per key, whatever the callers. A quiet run asks for one key; on a busy machine a
    # write-mark read that times out gives some callers the local mark, so another key.
    assert counter.selects_from_tasks() == reader.cache.stats.loads == len(keys)
    assert len(keys) <= 2, keys
    assert all(page == pages[0] for page in pages)
    assert len(pages[0]["tasks"]) == 3


async def test_concurrent_misses_share_one_query_even_when_redis_is_down(
    pg_pair: PgPair, make_reader: MakeReader
) -> None:
    user = user_with_tasks(pg_pair, 2)
    with running_redis() as server:
        url = server.url
    reader = await make_reader(cache_url=url)  # nothing listens there any more
    counter = QueryCounter(reader.replica)

    pages = await asyncio.gather(*(reader.get_user_stats(user) for _ in range(100)))

    # Without Redis, other gateways' marks are unknown: reads wait for the primary's position,
    # asked once for the first read and once for the 99 that came while it was asked.
    assert counter.selects_from_tasks() <= 2
    assert all(page == {"total": 2, "completed": 0, "pending": 2} for page in pages)
    assert reader.cache.stats.errors >= 1


async def test_cached_reads_skip_the_replica_until_the_ttl(
    pg_pair: PgPair, make_reader: MakeReader, cache_url: str
) -> None:
    user = user_with_tasks(pg_pair, 2)
    reader = await make_reader(cache_url=cache_url, cache_ttl=60)
    counter = QueryCounter(reader.replica)
    first = await reader.get_user_stats(user)
    # A write that bypasses this reader (no mark): cached readers may see it only after the TTL.
    wait_replayed(pg_pair, insert_tasks(pg_pair, user, 1))
    second = await reader.get_user_stats(user)
    assert first == second == {"total": 2, "completed": 0, "pending": 2}
    assert counter.selects_from_tasks() == 1
    assert reader.cache.stats.hits == 1


async def test_cache_ttl_zero_turns_caching_off(pg_pair: PgPair, make_reader: MakeReader) -> None:
    user = new_user(pg_pair)
    reader = await make_reader(cache_ttl=0)
    counter = QueryCounter(reader.replica)
    await reader.get_user_stats(user)
    wait_replayed(pg_pair, insert_tasks(pg_pair, user, 1))
    assert (await reader.get_user_stats(user))["total"] == 1
    assert counter.selects_from_tasks() == 2
    assert reader.cache.stats.hits == 0


async def test_a_per_tool_ttl_override_applies_to_that_tool_only(
    pg_pair: PgPair, make_reader: MakeReader
) -> None:
    user = user_with_tasks(pg_pair, 1)
    reader = await make_reader(cache_ttl=60, overrides={"list_tasks": 0})
    counter = QueryCounter(reader.replica)
    for _ in range(3):
        await reader.list_tasks(user, "all", 10, None)
        await reader.get_user_stats(user)
    # list_tasks reached the replica each time, get_user_stats once.
    assert counter.selects_from_tasks() == 4


async def test_a_write_makes_the_writers_cached_entries_unreachable(
    pg_pair: PgPair, make_reader: MakeReader, cache_url: str
) -> None:
    writer, other = new_user(pg_pair), new_user(pg_pair)
    wait_replayed(pg_pair, insert_tasks(pg_pair, writer, 1))
    wait_replayed(pg_pair, insert_tasks(pg_pair, other, 1))
    reader = await make_reader(cache_url=cache_url, cache_ttl=60)
    assert len((await reader.list_tasks(writer, "all", 10, None))["tasks"]) == 1
    assert len((await reader.list_tasks(other, "all", 10, None))["tasks"]) == 1

    lsn = insert_tasks(pg_pair, writer, 1)
    insert_tasks(pg_pair, other, 1)
    await reader.note_write(writer, lsn)

    assert len((await reader.list_tasks(writer, "all", 10, None))["tasks"]) == 2
    # Nobody wrote through the reader for `other`: its entry stands until the TTL.
    assert len((await reader.list_tasks(other, "all", 10, None))["tasks"]) == 1


async def test_a_write_through_one_gateway_is_seen_through_another_sharing_redis(
    pg_pair: PgPair, make_reader: MakeReader, redis_server: RedisServer
) -> None:
    user = new_user(pg_pair)
    first = await make_reader(cache_url=redis_server.url, cache_ttl=60)
    second = await make_reader(cache_url=redis_server.url, cache_ttl=60)
    assert (await second.get_user_stats(user))["total"] == 0  # cached in the shared Redis
    assert (await first.get_user_stats(user))["total"] == 0  # a hit: the same entry

    await first.note_write(user, insert_tasks(pg_pair, user, 1))

    assert (await second.get_user_stats(user))["total"] == 1
    assert first.cache.stats.hits == 1


async def test_redis_holds_plain_json_never_pickle(
    pg_pair: PgPair, make_reader: MakeReader, redis_server: RedisServer
) -> None:
    user = user_with_tasks(pg_pair, 2)
    reader = await make_reader(cache_url=redis_server.url)
    page = await reader.list_tasks(user, "all", 10, None)
    await reader.note_write(user, pg_pair.psql("SELECT pg_current_wal_lsn()"))

    client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        keys = [_text(k) for k in await client.keys(f"{CACHE_NAMESPACE}:*:{user}*")]
        values = {k: _raw(await client.get(k)) for k in keys}
    finally:
        await client.aclose()
    assert any(k.startswith(f"{CACHE_NAMESPACE}:list_tasks:{user}:") for k in keys), keys
    for raw in values.values():
        assert not raw.startswith(b"\x80")  # pickle's opcode
        json.loads(raw)
    listed = next(v for k, v in values.items() if "list_tasks" in k)
    assert json.loads(listed) == page


async def test_reads_answer_while_redis_is_down_and_own_writes_still_show(
    pg_pair: PgPair, make_reader: MakeReader
) -> None:
    user = new_user(pg_pair)
    with running_redis() as server:
        reader = await make_reader(cache_url=server.url)
        assert (await reader.get_user_stats(user))["total"] == 0
    # Redis is gone: reads go straight to the replica, and this gateway's marks still hold.
    await reader.note_write(user, insert_tasks(pg_pair, user, 1))
    assert (await reader.get_user_stats(user))["total"] == 1
    assert len((await reader.list_tasks(user, "all", 10, None))["tasks"]) == 1
    assert reader.cache.stats.errors >= 1


def _text(key: bytes | str) -> str:
    return key.decode() if isinstance(key, bytes) else key


def _raw(value: bytes | str | None) -> bytes:
    assert value is not None
    return value if isinstance(value, bytes) else value.encode()
