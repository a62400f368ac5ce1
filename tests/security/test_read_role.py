"""The read model's database role holds SELECT and nothing else: with read-only transactions
switched off, on the primary itself, every way of writing or escalating is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from taskgate.pgpair import READER_ROLE, PgPair

WRITES = [
    "INSERT INTO tasks (user_id, title) SELECT id, 'planted' FROM users LIMIT 1",
    "UPDATE tasks SET title = 'changed'",
    "DELETE FROM tasks",
    "TRUNCATE tasks",
    "UPDATE users SET password_hash = 'x'",
    "CREATE TABLE planted (id int)",
    "CREATE TEMP TABLE planted (id int)",
    "ALTER TABLE tasks ADD COLUMN planted int",
    "DROP TABLE tasks",
    "CREATE INDEX planted ON tasks (title)",
    "SELECT nextval(pg_get_serial_sequence('tasks', 'id'))",
    "SET ROLE taskgate",
    "COPY tasks FROM PROGRAM 'true'",
    "COPY tasks TO '/tmp/taskgate-planted'",
    "CREATE FUNCTION planted() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'walsender'",
]


@pytest.fixture
async def reader_on_primary(pg_pair: PgPair) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_pair.url(READER_ROLE, driver="postgresql"))
    try:
        # Past the first line of defence (default_transaction_read_only), to the privileges.
        await conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        yield conn
    finally:
        await conn.close()


async def test_the_reader_can_read(reader_on_primary: asyncpg.Connection) -> None:
    assert await reader_on_primary.fetchval("SELECT count(*) FROM tasks") >= 0


@pytest.mark.parametrize("statement", WRITES)
async def test_the_reader_role_cannot_write_even_on_the_primary(
    pg_pair: PgPair, reader_on_primary: asyncpg.Connection, statement: str
) -> None:
    before = pg_pair.psql("SELECT count(*), coalesce(max(updated_at)::text, '') FROM tasks")
    with pytest.raises(asyncpg.PostgresError) as refused:
        await reader_on_primary.execute(statement)
    # Refused for lack of privilege (42501), not for a typo in the statement.
    assert refused.value.sqlstate == "42501", (statement, refused.value)
    assert pg_pair.psql("SELECT count(*), coalesce(max(updated_at)::text, '') FROM tasks") == before


async def test_the_reader_role_cannot_grant_itself_more(
    reader_on_primary: asyncpg.Connection,
) -> None:
    # Postgres answers a grant without grant option with a warning, not an error: check the effect.
    await reader_on_primary.execute("GRANT INSERT, UPDATE, DELETE ON tasks TO taskgate_reader")
    for privilege in ("INSERT", "UPDATE", "DELETE"):
        assert not await reader_on_primary.fetchval(
            "SELECT has_table_privilege('taskgate_reader', 'tasks', $1)", privilege
        )


async def test_the_reader_role_cannot_pause_or_promote_the_replica(pg_pair: PgPair) -> None:
    conn = await asyncpg.connect(pg_pair.url(READER_ROLE, replica=True, driver="postgresql"))
    try:
        for statement in ("SELECT pg_wal_replay_pause()", "SELECT pg_promote()"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await conn.execute("CREATE TABLE planted (id int)")
    finally:
        await conn.close()
    assert pg_pair.psql("SELECT pg_is_in_recovery()", replica=True) == "t"
