"""Replica lag as the replica itself sees it: WAL received but not yet replayed.

Measured on the replica alone, because the read model holds no connection to the primary.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from readmodel.lsn import parse_lsn

# Seconds count only while WAL waits: an idle primary sends no transactions, and the age of
# the last one replayed would otherwise read as ever-growing lag.
_LAG_SQL = text(
    """
    SELECT
      COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)
        AS lag_bytes,
      CASE
        WHEN pg_last_wal_receive_lsn() IS NULL
          OR pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0
        ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)
      END AS lag_seconds,
      pg_last_wal_replay_lsn()::text AS replayed
    """
)


@dataclass(frozen=True)
class ReplicaLag:
    bytes: int
    seconds: float
    replayed: int = 0  # the replay position at the sample, for the replica set


async def replica_lag(engine: AsyncEngine) -> ReplicaLag:
    async with engine.connect() as conn:
        row = (await conn.execute(_LAG_SQL)).one()
    return ReplicaLag(
        bytes=max(0, int(row.lag_bytes)),
        seconds=max(0.0, float(row.lag_seconds)),
        replayed=parse_lsn(row.replayed) if row.replayed else 0,
    )
