"""Engines for the read path: the replica (READ_DATABASE_URL) and the optional primary fallback.

Every connection is read-only at the server (default_transaction_read_only), so even a
misconfigured URL pointing at the primary cannot write through the read model.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.settings import Settings


def create_read_engine(settings: Settings, url: str) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.read_pool_timeout,  # past it: rate_limited (overloaded)
        # A read is one statement: without a transaction it is one round trip, not three
        # (BEGIN, SELECT, ROLLBACK). A read that must first check replay opens one itself.
        isolation_level="AUTOCOMMIT",
        pool_pre_ping=False,  # a dead connection surfaces as replica_unavailable, then is replaced
        pool_recycle=300,
        connect_args={
            "timeout": settings.db_connect_timeout,
            "command_timeout": settings.replica_timeout,
            "server_settings": {
                "default_transaction_read_only": "on",
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "application_name": "taskgate-readmodel",
            },
        },
    )
