"""The read model's database role holds SELECT on the tasks table and nothing else: with
read-only transactions switched off, on the primary itself, every way of writing or escalating
is refused, and on the replica it cannot read a password hash or any other table."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from readmodel.engine import create_read_engine
from readmodel.lag import replica_lag
from readmodel.lsn import parse_lsn
from readmodel.queries import replayed_lsn
from shared.settings import Settings
from taskgate.pgpair import READER_ROLE, PgPair
from tests.support.readmodel import new_user, task_statement, wait_replayed

# Everything the reader must not see, on the replica where the gateway reads.
HIDDEN = [
    "SELECT password_hash FROM users",
    "SELECT * FROM users",
    "SELECT email FROM users",
    "SELECT count(*) FROM users",
    "SELECT * FROM idempotency_keys",
    "SELECT * FROM alembic_version",
    "SELECT token_hash FROM oauth_refresh_tokens",
    "SELECT code_hash FROM oauth_codes",
    "SELECT info FROM oauth_clients",
]

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


async def test_the_reader_can_read(pg_pair: PgPair, reader_on_primary: asyncpg.Connection) -> None:
    user_id = new_user(pg_pair)
    title = f"readable {uuid.uuid4().hex}"
    pg_pair.psql(f"INSERT INTO tasks (user_id, title) VALUES ({user_id}, '{title}')")
    assert await reader_on_primary.fetchval("SELECT title FROM tasks WHERE title = $1", title) == (
        title
    )


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


@pytest.fixture
async def reader_on_replica(pg_pair: PgPair) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_pair.url(READER_ROLE, replica=True, driver="postgresql"))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.mark.parametrize("statement", HIDDEN)
async def test_the_reader_cannot_read_password_hashes_or_other_tables_on_the_replica(
    reader_on_replica: asyncpg.Connection, statement: str
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await reader_on_replica.fetch(statement)


async def test_the_reader_holds_select_on_tasks_and_no_other_table(pg_pair: PgPair) -> None:
    # Every table of the schema, including ones later migrations add (OAuth clients, tokens):
    # a new table stays hidden until a migration grants it by name.
    held = pg_pair.psql(
        "SELECT c.relname || ':' || p.privilege FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public' "
        "CROSS JOIN unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE','REFERENCES',"
        "'TRIGGER']) AS p(privilege) "
        f"WHERE c.relkind IN ('r', 'p', 'v', 'm') "
        f"AND has_table_privilege('{READER_ROLE}', c.oid, p.privilege) ORDER BY 1",
        replica=True,
    )
    assert held.splitlines() == ["tasks:SELECT"]
    assert (
        pg_pair.psql(
            f"SELECT has_column_privilege('{READER_ROLE}', 'users', 'password_hash', 'SELECT')",
            replica=True,
        )
        == "f"
    )


async def test_the_reader_still_runs_every_read_query_on_the_replica(
    pg_pair: PgPair, settings: Settings
) -> None:
    user_id = new_user(pg_pair)
    task_id = int(
        pg_pair.psql(
            f"INSERT INTO tasks (user_id, title) VALUES ({user_id}, 'visible') RETURNING id"
        ).splitlines()[0]
    )
    lsn = pg_pair.psql("SELECT pg_current_wal_lsn()")
    wait_replayed(pg_pair, lsn)

    engine = create_read_engine(settings, settings.read_database_url)
    try:
        async with engine.connect() as conn:

            async def rows(name: str, **arguments: object) -> list[dict[str, object]]:
                result = await conn.execute(task_statement(name, user_id, **arguments))
                return [dict(row) for row in result.mappings()]

            page = await rows("list_tasks", status="all", limit=10)
            assert [row["title"] for row in page] == ["visible"]
            assert await rows("list_tasks", status="completed", limit=10) == []
            task = await rows("get_task", task_id=task_id)
            assert task and task[0]["id"] == task_id
            stats = await rows("get_user_stats")
            assert stats == [{"total": 1, "completed": 0, "pending": 1}]
            assert await replayed_lsn(conn)
        # The sample's replay position is the replica's, so it has passed the seed.
        assert (await replica_lag(engine)).replayed >= parse_lsn(lsn)
    finally:
        await engine.dispose()
