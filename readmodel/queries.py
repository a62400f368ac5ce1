"""The read side's own queries. The read tools' selects are the app spec's (readmodel.reads)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def replayed_lsn(conn: AsyncConnection) -> str | None:
    """The replica's replay position; on a primary (the fallback), its current WAL position."""
    position: str | None = await conn.scalar(
        text(
            "SELECT COALESCE(pg_last_wal_replay_lsn(), "
            "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END)::text"
        )
    )
    return position
