"""The backend's engine on the primary (DATABASE_URL)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from shared.settings import Settings

# A pooled connection used this recently is taken as alive; an older one is checked first.
PING_AFTER_IDLE_SECONDS = 1.0
_LAST_USED = "taskgate_last_used"


def create_write_engine(settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        # Most recently used first: a write's second checkout (for its commit LSN) gets the
        # connection it just gave back, which needs no check.
        pool_use_lifo=True,
        connect_args={
            "timeout": settings.db_connect_timeout,
            "server_settings": {"statement_timeout": str(settings.db_statement_timeout_ms)},
        },
    )
    _check_idle_connections(engine)
    return engine


def _check_idle_connections(engine: AsyncEngine) -> None:
    """Survive a primary restart without restarting the backend: a connection idle for over
    PING_AFTER_IDLE_SECONDS is pinged before use, and replaced if dead.

    SQLAlchemy's pool_pre_ping pings every checkout, with three round trips on asyncpg (BEGIN,
    the ping, ROLLBACK): six per write, more than the write's own statements. A connection
    that dies while in use (or within the second) fails its request as backend_unavailable,
    and SQLAlchemy then replaces every connection opened before the failure.
    """
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "connect")
    def _opened(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(pool, "checkin")
    def _returned(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        if time.monotonic() - record.info.get(_LAST_USED, 0.0) < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dbapi_connection.run_async(lambda driver: driver.execute(";"))  # one round trip
        except Exception as exc:
            # The pool drops this connection and checks out another (a new one if need be).
            raise DisconnectionError(f"pooled connection is dead: {type(exc).__name__}") from exc


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker:  # type: ignore[type-arg]
    return async_sessionmaker(engine, expire_on_commit=False)
