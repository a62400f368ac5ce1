"""The read side's queries: plain selects that return plain data, each served by an index."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.cursor import Keyset
from shared.models import Task
from shared.paging import newest_first
from shared.rules import Status

_COLUMNS = (
    Task.id,
    Task.user_id,
    Task.title,
    Task.description,
    Task.completed,
    Task.created_at,
    Task.updated_at,
)


def list_tasks_query(user_id: int, status: Status, limit: int, after: Keyset | None) -> Any:
    return newest_first(select(*_COLUMNS), user_id, status, after, limit)


async def list_tasks_for(
    conn: AsyncConnection, user_id: int, status: Status, limit: int, after: Keyset | None
) -> list[dict[str, Any]]:
    result = await conn.execute(list_tasks_query(user_id, status, limit, after))
    return [dict(row) for row in result.mappings()]


def get_task_query(user_id: int, task_id: int) -> Any:
    return select(*_COLUMNS).where(Task.id == task_id, Task.user_id == user_id)


async def get_task_for(conn: AsyncConnection, user_id: int, task_id: int) -> dict[str, Any] | None:
    result = await conn.execute(get_task_query(user_id, task_id))
    row = result.mappings().first()
    return dict(row) if row else None


def user_stats_query(user_id: int) -> Any:
    return select(
        func.count().label("total"),
        func.count().filter(Task.completed.is_(True)).label("completed"),
    ).where(Task.user_id == user_id)


async def user_stats_for(conn: AsyncConnection, user_id: int) -> dict[str, int]:
    row = (await conn.execute(user_stats_query(user_id))).one()
    total, completed = int(row.total), int(row.completed)
    return {"total": total, "completed": completed, "pending": total - completed}


async def replayed_lsn(conn: AsyncConnection) -> str | None:
    """The replica's replay position; on a primary (the fallback), its current WAL position."""
    position: str | None = await conn.scalar(
        text(
            "SELECT COALESCE(pg_last_wal_replay_lsn(), "
            "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END)::text"
        )
    )
    return position
