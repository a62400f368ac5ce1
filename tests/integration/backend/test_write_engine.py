"""The backend's engine on the primary takes its pool and timeouts from settings."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.pool import QueuePool

from backend.db import create_write_engine
from shared.settings import Settings


async def test_pool_and_timeouts_come_from_settings(settings: Settings) -> None:
    tuned = settings.model_copy(
        update={
            "db_pool_size": 3,
            "db_max_overflow": 2,
            "db_pool_timeout": 1.5,
            "db_statement_timeout_ms": 1234,
        }
    )
    engine = create_write_engine(tuned)
    try:
        pool = engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.size() == tuned.db_pool_size
        assert pool.timeout() == tuned.db_pool_timeout
        async with engine.connect() as conn:
            applied = await conn.scalar(text("SELECT current_setting('statement_timeout')"))
        assert applied == f"{tuned.db_statement_timeout_ms}ms"
    finally:
        await engine.dispose()
