"""The task rules: a user sees and changes only their own tasks; creates are idempotent by key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import Select, case, delete, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.api import IDEMPOTENCY_HEADER
from shared.errors import ErrorCode, TaskgateError
from shared.models import IdempotencyKey, Task
from shared.paging import TaskKeyset, newest_first
from shared.rules import Status
from shared.schemas import TaskCreate, TaskUpdate
from shared.wal_position import COMMITTED_POSITION_SQL


@dataclass(frozen=True)
class Written:
    """A committed write and the WAL position of its commit, for read-your-writes."""

    task: Task | None
    commit_lsn: str


COMMIT_POSITION = text(COMMITTED_POSITION_SQL)


async def _commit_lsn(session: AsyncSession) -> str:
    await session.commit()
    # Outside any transaction: one round trip, where a new transaction took three (BEGIN,
    # SELECT, COMMIT). A transaction's own statements cannot know its commit record's LSN.
    conn = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return str(await conn.scalar(COMMIT_POSITION))


def _request_hash(data: TaskCreate) -> str:
    body = json.dumps(data.model_dump(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


_TASK_FIELDS = ("id", "user_id", "title", "description", "completed", "created_at", "updated_at")
_CREATE_CLAIMED = text(
    f"""
    WITH task AS (
        INSERT INTO tasks (user_id, title, description)
        VALUES (:user_id, :title, :description)
        RETURNING {", ".join(_TASK_FIELDS)}
    ), claim AS (
        INSERT INTO idempotency_keys (user_id, key, request_hash, task_id)
        SELECT :user_id, :key, :request_hash, task.id FROM task
        ON CONFLICT DO NOTHING
        RETURNING key
    )
    SELECT task.*, EXISTS (SELECT FROM claim) AS claimed FROM task
    """
)


async def _insert_task(session: AsyncSession, user_id: int, data: TaskCreate) -> Task:
    task = Task(user_id=user_id, title=data.title, description=data.description)
    session.add(task)
    await session.flush()  # INSERT ... RETURNING fills in id and the server defaults
    return task


async def create_task(
    session: AsyncSession, user_id: int, data: TaskCreate, idempotency_key: str | None
) -> tuple[Written, bool]:
    """Create a task. Returns the write and whether it was replayed from an earlier call."""
    if idempotency_key is None:
        task = await _insert_task(session, user_id, data)
        return Written(task, await _commit_lsn(session)), False

    request_hash = _request_hash(data)
    # One statement inserts the task and claims the key for it. The primary key (user_id, key)
    # serialises concurrent retries: the losers wait for the winner's commit, claim nothing,
    # drop their task with the transaction, and read the winner's task below.
    row = (
        await session.execute(
            _CREATE_CLAIMED,
            {
                "user_id": user_id,
                "title": data.title,
                "description": data.description,
                "key": idempotency_key,
                "request_hash": request_hash,
            },
        )
    ).one()
    if row.claimed:
        task = Task(**{name: row._mapping[name] for name in _TASK_FIELDS})
        return Written(task, await _commit_lsn(session)), False
    await session.rollback()

    record = await session.get(IdempotencyKey, (user_id, idempotency_key))
    if record is None or record.request_hash != request_hash:
        raise _key_conflict(
            "this Idempotency-Key was already used with a different request body", "other_body"
        )
    # The current state of the task that the first call created (it may have changed since).
    replayed = await session.get(Task, record.task_id) if record.task_id is not None else None
    if replayed is None:
        raise _key_conflict(
            "the task created with this Idempotency-Key has since been deleted; "
            "use a new key to create another",
            "task_deleted",
        )
    return Written(replayed, await _commit_lsn(session)), True


def _key_conflict(message: str, reason: str) -> TaskgateError:
    return TaskgateError(
        ErrorCode.CONFLICT, message, {"header": IDEMPOTENCY_HEADER, "reason": reason}
    )


async def get_task(session: AsyncSession, user_id: int, task_id: int) -> Task:
    task = await session.scalar(select(Task).where(Task.id == task_id, Task.user_id == user_id))
    if task is None:
        raise _not_found(task_id)
    return task


def list_tasks_query(
    user_id: int, status: Status, limit: int, after: TaskKeyset | None
) -> Select[Task]:
    # One row more than asked says whether a next page exists, so none is ever empty.
    return newest_first(select(Task), user_id, status, after, limit + 1)


async def list_tasks(
    session: AsyncSession, user_id: int, status: Status, limit: int, after: TaskKeyset | None
) -> tuple[list[Task], bool]:
    """A page of the user's tasks, newest first, and whether more follow it."""
    rows = list((await session.scalars(list_tasks_query(user_id, status, limit, after))).all())
    return rows[:limit], len(rows) > limit


async def update_task(
    session: AsyncSession, user_id: int, task_id: int, data: TaskUpdate
) -> Written:
    """Change only the fields the caller sent (the schema refuses null title and completed)."""
    return await _update(session, user_id, task_id, data.model_dump(exclude_unset=True))


async def complete_task(session: AsyncSession, user_id: int, task_id: int) -> Written:
    return await _update(session, user_id, task_id, {"completed": True})


async def _update(
    session: AsyncSession, user_id: int, task_id: int, changes: dict[str, object]
) -> Written:
    # updated_at moves only when a value does: completing a completed task changes nothing.
    differs = or_(*(getattr(Task, name).is_distinct_from(value) for name, value in changes.items()))
    task = await session.scalar(
        update(Task)
        .where(Task.id == task_id, Task.user_id == user_id)
        .values(**changes, updated_at=case((differs, func.now()), else_=Task.updated_at))
        .returning(Task)
    )
    if task is None:
        raise _not_found(task_id)
    return Written(task, await _commit_lsn(session))


async def delete_task(session: AsyncSession, user_id: int, task_id: int) -> Written:
    deleted = await session.scalar(
        delete(Task).where(Task.id == task_id, Task.user_id == user_id).returning(Task.id)
    )
    if deleted is None:
        raise _not_found(task_id)
    return Written(None, await _commit_lsn(session))


def _not_found(task_id: int) -> TaskgateError:
    # Another user's task answers the same as a missing one, so existence does not leak.
    return TaskgateError(ErrorCode.NOT_FOUND, f"task {task_id} not found", {"task_id": task_id})
