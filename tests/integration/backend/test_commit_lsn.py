"""Every successful write answers X-Commit-LSN, and a replica at that LSN has the write."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from backend.openapi import LSN_HEADER
from backend.services.tasks import COMMIT_POSITION
from taskgate.pgpair import PgPair
from tests.support.backend_api import SignedUp
from tests.support.faults import replay_paused

TASKS = "/api/v1/tasks"


@pytest.fixture(scope="module")
async def replica(pg_pair: PgPair) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(pg_pair.read_database_url, pool_size=1)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _replayed(replica: AsyncEngine, lsn: str) -> bool:
    async with replica.connect() as conn:
        return bool(
            await conn.scalar(
                text("SELECT pg_last_wal_replay_lsn() >= CAST(CAST(:lsn AS text) AS pg_lsn)"),
                {"lsn": lsn},
            )
        )


async def _wait_for_replay(replica: AsyncEngine, lsn: str, within: float = 30) -> None:
    """Polls until the replica has replayed lsn; bounded so a broken pair fails, not hangs."""
    async with asyncio.timeout(within):
        while True:  # polling: PostgreSQL has no notification for replay progress
            if await _replayed(replica, lsn):
                return
            await asyncio.sleep(0.02)


async def _lsn_order(primary: AsyncEngine, a: str, b: str) -> int:
    async with primary.connect() as conn:
        diff = await conn.scalar(
            # Text in, cast in SQL: asyncpg's pg_lsn codec wants integers.
            text("SELECT pg_wal_lsn_diff(CAST(:b AS text)::pg_lsn, CAST(:a AS text)::pg_lsn)"),
            {"a": a, "b": b},
        )
    return int(diff or 0)


async def test_every_write_answers_a_commit_lsn_that_only_moves_forward(
    api: httpx.AsyncClient, user: SignedUp, primary: AsyncEngine
) -> None:
    created = await api.post(TASKS, json={"title": "t"}, headers=user.auth)
    url = f"{TASKS}/{created.json()['id']}"
    writes = [
        created,
        await api.patch(url, json={"title": "u"}, headers=user.auth),
        await api.post(f"{url}/complete", headers=user.auth),
        await api.delete(url, headers=user.auth),
    ]
    lsns = [w.headers[LSN_HEADER] for w in writes]
    assert all(w.is_success for w in writes)
    for earlier, later in itertools.pairwise(lsns):
        assert await _lsn_order(primary, earlier, later) > 0


async def test_reads_and_failed_writes_answer_no_lsn(
    api: httpx.AsyncClient, user: SignedUp
) -> None:
    listed = await api.get(TASKS, headers=user.auth)
    refused = await api.post(TASKS, json={"title": ""}, headers=user.auth)
    missing = await api.delete(f"{TASKS}/{2**62}", headers=user.auth)
    for response in (listed, refused, missing):
        assert LSN_HEADER not in response.headers


async def test_lagging_replica_sees_the_write_once_it_replays_the_lsn(
    api: httpx.AsyncClient, user: SignedUp, replica: AsyncEngine, pg_pair: PgPair
) -> None:
    with replay_paused(pg_pair):
        await _wait_until_paused(pg_pair)
        created = await api.post(TASKS, json={"title": "on the replica"}, headers=user.auth)
        task_id = created.json()["id"]
        lsn = created.headers[LSN_HEADER]
        assert await _title_on(replica, task_id) is None  # the replica lags behind the write
        assert not await _replayed(replica, lsn)
    await _wait_for_replay(replica, lsn)
    assert await _title_on(replica, task_id) == "on the replica"


async def _wait_until_paused(pg_pair: PgPair) -> None:
    async with asyncio.timeout(30):
        while True:  # a pause request takes effect between WAL records
            if pg_pair.psql("SELECT pg_get_wal_replay_pause_state()", replica=True) == "paused":
                return
            await asyncio.sleep(0.02)


async def _title_on(replica: AsyncEngine, task_id: int) -> str | None:
    async with replica.connect() as conn:
        title = await conn.scalar(text("SELECT title FROM tasks WHERE id = :id"), {"id": task_id})
    return None if title is None else str(title)


async def test_the_commit_position_is_one_a_replica_reaches_while_another_write_is_open(
    primary: AsyncEngine, replica: AsyncEngine, user: SignedUp
) -> None:
    # After this commit, another session's open transaction adds a WAL record on a part-filled
    # page, which nothing flushes until it commits: a position past it is never replayed.
    async with primary.connect() as writer, primary.connect() as other:
        task_id = await writer.scalar(
            text("INSERT INTO tasks (user_id, title) VALUES (:u, 'mine') RETURNING id"),
            {"u": user.id},
        )
        await writer.commit()
        await other.execute(
            text("INSERT INTO tasks (user_id, title) VALUES (:u, 'open')"), {"u": user.id}
        )
        autocommit = await writer.execution_options(isolation_level="AUTOCOMMIT")
        lsn = str(await autocommit.scalar(COMMIT_POSITION))
        await _wait_for_replay(replica, lsn, within=5)
        assert await _title_on(replica, task_id) == "mine"
        await other.rollback()
