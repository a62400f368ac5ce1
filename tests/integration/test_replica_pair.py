"""The local pair is a real primary and a real hot-standby streaming replica."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from readmodel.engine import create_read_engine
from shared.settings import Settings
from taskgate.pgpair import PgPair, PgPairError


def test_replica_is_streaming_from_primary(pg_pair: PgPair) -> None:
    assert pg_pair.psql("SELECT pg_is_in_recovery()", replica=True) == "t"
    assert pg_pair.psql("SELECT pg_is_in_recovery()") == "f"
    assert "streaming" in pg_pair.psql("SELECT state FROM pg_stat_replication")


def test_replica_refuses_writes_even_from_a_superuser(pg_pair: PgPair) -> None:
    with pytest.raises(PgPairError, match="read-only transaction"):
        pg_pair.psql("CREATE TABLE nope (id int)", replica=True)


async def test_read_model_connection_cannot_write_even_on_the_primary(
    pg_pair: PgPair, settings: Settings
) -> None:
    on_primary = pg_pair.url("taskgate_reader")
    engine = create_read_engine(settings, on_primary)
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM tasks")) is not None
            with pytest.raises(DBAPIError, match="read-only transaction"):
                await conn.execute(
                    text("INSERT INTO users (email, password_hash) VALUES ('x@y.z', 'h')")
                )
            await conn.rollback()
            # Even with read-only switched off for the session (reads run in autocommit, so one
            # transaction's SET would not reach the INSERT), the reader role holds SELECT only.
            await conn.execute(text("SET default_transaction_read_only = off"))
            with pytest.raises(DBAPIError, match="permission denied"):
                await conn.execute(
                    text("INSERT INTO users (email, password_hash) VALUES ('x@y.z', 'h')")
                )
    finally:
        await engine.dispose()
