"""Rows written on the primary and waited for on the replica, and counters of the reads that
reach it."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from readmodel.lsn import parse_lsn
from readmodel.reader import CachedRead, Reader
from readmodel.reads import CompiledRead, compile_reads
from readmodel.replicas import Replica, ReplicaSet
from shared.task_service import TASKS
from taskgate.pgpair import PgPair
from tests.support.waiting import WAIT_SECONDS, wait_until

TASK_READS = compile_reads(TASKS)


class TaskReader(Reader):
    """The read model serving the task service's spec, with one typed method per read tool, as
    the suites call them."""

    def __init__(self, replicas: ReplicaSet | AsyncEngine, *args: Any, **kwargs: Any) -> None:
        # An engine alone is one URL that may be a pooler (one_replica).
        if isinstance(replicas, AsyncEngine):
            replicas = one_replica(replicas)
        super().__init__(TASK_READS, replicas, *args, **kwargs)

    async def list_tasks(
        self, user_id: int, status: Any, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        args = {"status": status, "limit": limit, "cursor": cursor}
        return await self.read("list_tasks", user_id, args)

    async def get_task(self, user_id: int, task_id: int) -> dict[str, Any]:
        return await self.read("get_task", user_id, {"task_id": task_id})

    async def get_user_stats(self, user_id: int) -> dict[str, Any]:
        return await self.read("get_user_stats", user_id, {})

    async def cached_list_tasks(
        self, user_id: int, status: Any, limit: int, cursor: str | None
    ) -> CachedRead | None:
        args = {"status": status, "limit": limit, "cursor": cursor}
        return await self.cached("list_tasks", user_id, args)

    async def cached_get_task(self, user_id: int, task_id: int) -> CachedRead | None:
        return await self.cached("get_task", user_id, {"task_id": task_id})

    async def cached_user_stats(self, user_id: int) -> CachedRead | None:
        return await self.cached("get_user_stats", user_id, {})


def task_statement(name: str, user_id: int, after: Any = None, **arguments: Any) -> Any:
    """The select a task read tool sends, as the read model builds it (owner filter, paging)."""
    read: CompiledRead = TASK_READS[name]
    return read.statement(user_id, read.checked(arguments), after)


MakeReader = Callable[..., Awaitable[TaskReader]]


def one_replica(engine: AsyncEngine) -> ReplicaSet:
    """A set of one engine, read as one URL that may be a pooler: positions are checked on each
    read's connection, and lag alone never sets it aside."""
    return ReplicaSet(
        [Replica("0", engine)], servers=False, max_lag_seconds=float("inf"), retry_max_seconds=30.0
    )


def new_user(pair: PgPair) -> int:
    email = f"reader-{uuid.uuid4().hex[:12]}@example.com"
    return int(
        pair.psql(
            f"INSERT INTO users (email, password_hash) VALUES ('{email}', 'x') RETURNING id"
        ).splitlines()[0]
    )


def user_with_tasks(pair: PgPair, count: int) -> int:
    """A new user with `count` tasks (see insert_tasks) that the replica has replayed."""
    user = new_user(pair)
    wait_replayed(pair, insert_tasks(pair, user, count))
    return user


def insert_tasks(
    pair: PgPair, user_id: int, count: int, completed_every: int = 3, spacing: int = 1
) -> str:
    """`count` tasks for the user on the primary, `spacing` seconds apart (0: all at once).

    Every `completed_every`-th task is completed. Returns the primary's WAL position after.
    """
    pair.psql(
        "INSERT INTO tasks (user_id, title, completed, created_at, updated_at) "
        f"SELECT {user_id}, 'task ' || g, g % {completed_every} = 0, "
        f"now() - make_interval(secs => g * {spacing}), now() "
        f"FROM generate_series(1, {count}) AS g"
    )
    return pair.psql("SELECT pg_current_wal_lsn()")


def insert_largest_tasks(pair: PgPair, user_id: int, count: int = 200) -> str:
    """`count` tasks at the backend's size limits, in 4-byte emoji (200-character titles,
    1,000-character descriptions): the largest pages one user can make. Returns the primary's
    WAL position after."""
    pair.psql(
        "INSERT INTO tasks (user_id, title, description, completed, created_at, updated_at) "
        f"SELECT {user_id}, left(g || ' ' || repeat(chr(128512), 200), 200), "
        "repeat(chr(128640), 1000), g % 2 = 0, now() - make_interval(secs => g), now() "
        f"FROM generate_series(1, {count}) AS g"
    )
    return pair.psql("SELECT pg_current_wal_lsn()")


def wait_replayed(
    pair: PgPair, lsn: str, timeout: float = WAIT_SECONDS, replica: bool | int = True
) -> None:
    replayed = f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"
    wait_until(lambda: pair.psql(replayed, replica=replica) == "t", f"replay of {lsn}", timeout)


@contextmanager
def replica_frozen(pair: PgPair) -> Iterator[None]:
    """SIGSTOP every process of the replica: it accepts connections and never answers."""
    postmaster = int((pair.replica_dir / "postmaster.pid").read_text().split()[0])
    pids = [postmaster, *_children(postmaster)]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def _children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


class QueryCounter:
    """Counts the statements an engine really sends to its server."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._count)

    def _count(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.statements.append(statement)

    def selects_from_tasks(self) -> int:
        return sum(1 for s in self.statements if "FROM tasks" in s)


def primary_position_of(pair: PgPair) -> Callable[[], Awaitable[int]]:
    """What the gateway asks the backend for: the primary's current WAL position."""

    async def position() -> int:
        return parse_lsn(await asyncio.to_thread(pair.psql, "SELECT pg_current_wal_lsn()"))

    return position
