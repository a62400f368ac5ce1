"""Read-your-writes on the real pair: waiting for replay, the primary fallback, and the bound."""

from __future__ import annotations

import asyncio

import pytest

from shared.errors import ErrorCode, TaskgateError
from shared.settings import Settings
from taskgate.pgpair import PgPair
from tests.support.faults import replay_paused, resume_replay, start_replica, stop_replica
from tests.support.readmodel import (
    MakeReader,
    insert_tasks,
    new_user,
    replica_frozen,
    user_with_tasks,
    wait_replayed,
)
from tests.support.waiting import ANSWER_BOUND_SECONDS, eventually


async def test_reader_waits_for_replay_of_its_users_write(
    pg_pair: PgPair, make_reader: MakeReader
) -> None:
    user = new_user(pg_pair)
    reader = await make_reader(ryw_wait_timeout=30)
    assert (await reader.get_user_stats(user))["total"] == 0
    with replay_paused(pg_pair):
        await reader.note_write(user, insert_tasks(pg_pair, user, 1))
        read = asyncio.create_task(reader.get_user_stats(user))
        await asyncio.sleep(0.5)
        assert not read.done()  # waiting for the replica, not answering from the old snapshot
        resume_replay(pg_pair)
        assert (await read)["total"] == 1
    assert reader.stats.ryw_waits == 1
    assert reader.stats.ryw_fallbacks == 0


async def test_reader_falls_back_to_the_primary_past_the_bound(
    pg_pair: PgPair, make_reader: MakeReader
) -> None:
    user = new_user(pg_pair)
    reader = await make_reader(ryw_wait_timeout=0.2, fallback=True)
    with replay_paused(pg_pair):
        await reader.note_write(user, insert_tasks(pg_pair, user, 2))
        page = await reader.list_tasks(user, "all", 10, None)
        assert len(page["tasks"]) == 2
    assert reader.stats.ryw_fallbacks == 1


async def test_reader_without_fallback_answers_replica_unavailable_with_the_lag(
    pg_pair: PgPair, make_reader: MakeReader
) -> None:
    user = new_user(pg_pair)
    reader = await make_reader(ryw_wait_timeout=0.2)
    with replay_paused(pg_pair):
        lsn = insert_tasks(pg_pair, user, 1)
        await reader.note_write(user, lsn)
        with pytest.raises(TaskgateError) as raised:
            await reader.get_user_stats(user)
    error = raised.value
    assert error.code is ErrorCode.REPLICA_UNAVAILABLE
    assert error.details["lag_bytes"] > 0
    assert error.details["write_lsn"] == lsn
    assert reader.stats.ryw_refusals == 1
    # Once the replica catches up the same read answers, and the refusal was not cached.
    wait_replayed(pg_pair, lsn)
    assert (await reader.get_user_stats(user))["total"] == 1


async def test_other_users_do_not_wait_for_someone_elses_write(
    pg_pair: PgPair, make_reader: MakeReader
) -> None:
    writer, other = new_user(pg_pair), new_user(pg_pair)
    reader = await make_reader(ryw_wait_timeout=0.2)
    with replay_paused(pg_pair):
        await reader.note_write(writer, insert_tasks(pg_pair, writer, 1))
        assert (await reader.get_user_stats(other))["total"] == 0
    assert reader.stats.ryw_waits == 0


async def test_a_replica_that_restarted_is_read_again_at_once_despite_stale_pooled_connections(
    pg_pair: PgPair, make_reader: MakeReader
) -> None:
    user = user_with_tasks(pg_pair, 1)
    reader = await make_reader(cache_ttl=0)
    # Fill the pool with several connections, all of which the restart will kill.
    await asyncio.gather(*(reader.get_user_stats(user) for _ in range(5)))
    try:
        stop_replica(pg_pair)
        with pytest.raises(TaskgateError) as raised:
            async with asyncio.timeout(ANSWER_BOUND_SECONDS):
                await reader.get_user_stats(user)
        assert raised.value.code is ErrorCode.REPLICA_UNAVAILABLE
    finally:
        start_replica(pg_pair)
        pg_pair.wait_streaming()
    assert (await reader.get_user_stats(user))["total"] == 1


async def test_a_down_replica_is_read_from_the_fallback(
    pg_pair: PgPair, make_reader: MakeReader
) -> None:
    user = user_with_tasks(pg_pair, 1)
    reader = await make_reader(cache_ttl=0, fallback=True)
    await reader.get_user_stats(user)
    try:
        stop_replica(pg_pair)
        insert_tasks(pg_pair, user, 1)
        assert (await reader.get_user_stats(user))["total"] == 2
    finally:
        start_replica(pg_pair)
        pg_pair.wait_streaming()
    assert reader.stats.replica_errors >= 1


@pytest.mark.parametrize("fallback", [False, True], ids=["no-fallback", "fallback"])
async def test_a_hung_replica_answers_instead_of_hanging(
    pg_pair: PgPair, make_reader: MakeReader, settings: Settings, fallback: bool
) -> None:
    user = user_with_tasks(pg_pair, 1)
    reader = await make_reader(cache_ttl=0, fallback=fallback)
    # Pooled connections that will hang rather than fail, and a default REPLICA_TIMEOUT.
    await asyncio.gather(*(reader.get_user_stats(user) for _ in range(3)))
    assert reader._replica_timeout == settings.replica_timeout
    with replica_frozen(pg_pair):
        # The freeze lasts until the block ends, so only REPLICA_TIMEOUT can end the read.
        async with asyncio.timeout(ANSWER_BOUND_SECONDS):
            if fallback:
                assert (await reader.get_user_stats(user))["total"] == 1
            else:
                with pytest.raises(TaskgateError) as raised:
                    await reader.get_user_stats(user)
                assert raised.value.code is ErrorCode.REPLICA_UNAVAILABLE

    async def serves() -> bool:
        try:
            return bool((await reader.get_user_stats(user))["total"] == 1)
        except TaskgateError:
            return False

    # The frozen connections are discarded; the replica serves again.
    await eventually(serves, "the reader's recovery after the replica thawed")
