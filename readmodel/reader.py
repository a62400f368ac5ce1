"""The read path's one entry point: cache, then read-your-writes wait, then the replica query.

A write through the gateway leaves a mark (its commit LSN) for its user, in this process and in
the shared cache. Cache keys include the mark, so the write makes that user's older entries
unreachable at once, in every gateway that shares the cache. A read that carries a mark waits
until the replica has replayed it, then reads from the replica, or from the primary fallback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from readmodel import queries
from readmodel.cache import ReadCache
from readmodel.consistency import ReplayWatcher, parse_lsn
from shared.cursor import Keyset, decode_cursor, encode_cursor
from shared.errors import ErrorCode, TaskgateError
from shared.schemas import Status

log = logging.getLogger(__name__)

T = TypeVar("T")
_LOCAL_MARKS_MAX = 100_000


@dataclass
class ReadStats:
    ryw_waits: int = 0
    ryw_fallbacks: int = 0
    ryw_refusals: int = 0
    replica_errors: int = 0


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


class TaskReader:
    def __init__(
        self,
        replica: AsyncEngine,
        cache: ReadCache,
        cursor_secret: bytes,
        ryw_wait_timeout: float,
        replica_timeout: float,
        fallback: AsyncEngine | None = None,
    ) -> None:
        self.replica = replica
        self.fallback = fallback
        self.cache = cache
        self.watcher = ReplayWatcher()
        self.stats = ReadStats()
        self._secret = cursor_secret
        self._ryw_wait = ryw_wait_timeout
        self._replica_timeout = replica_timeout
        self._local_marks: OrderedDict[int, int] = OrderedDict()

    # -- writes leave marks ------------------------------------------------------

    async def note_write(self, user_id: int, commit_lsn: str) -> None:
        position = parse_lsn(commit_lsn)
        if position > self._local_marks.get(user_id, 0):
            self._local_marks[user_id] = position
            self._local_marks.move_to_end(user_id)
            if len(self._local_marks) > _LOCAL_MARKS_MAX:
                self._local_marks.popitem(last=False)
        shared = await self._shared_mark(user_id)
        if position > shared:
            await self.cache.set_mark(user_id, commit_lsn)

    async def _shared_mark(self, user_id: int) -> int:
        value = await self.cache.get_mark(user_id)
        try:
            return parse_lsn(value) if value else 0
        except ValueError:
            return 0

    async def _mark(self, user_id: int) -> int:
        return max(self._local_marks.get(user_id, 0), await self._shared_mark(user_id))

    # -- the read tools ----------------------------------------------------------

    async def list_tasks(
        self, user_id: int, status: Status, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        after = decode_cursor(self._secret, status, cursor) if cursor else None

        async def load(conn: AsyncConnection) -> dict[str, Any]:
            rows = await queries.list_tasks_for(conn, user_id, status, limit, after)
            next_cursor = None
            if len(rows) == limit:
                last = rows[-1]
                next_cursor = encode_cursor(
                    self._secret, status, Keyset(last["created_at"], last["id"])
                )
            return {"tasks": [_jsonable(r) for r in rows], "next_cursor": next_cursor}

        args = json.dumps([status, limit, cursor])
        result: dict[str, Any] = await self._cached("list_tasks", user_id, args, load)
        return result

    async def get_task(self, user_id: int, task_id: int) -> dict[str, Any]:
        async def load(conn: AsyncConnection) -> dict[str, Any]:
            row = await queries.get_task_for(conn, user_id, task_id)
            # A miss is cached too ({}), so probing for ids does not reach the replica each time.
            return _jsonable(row) if row else {}

        task: dict[str, Any] = await self._cached("get_task", user_id, str(task_id), load)
        if not task:
            raise TaskgateError(
                ErrorCode.NOT_FOUND, f"task {task_id} not found", {"task_id": task_id}
            )
        return task

    async def get_user_stats(self, user_id: int) -> dict[str, int]:
        async def load(conn: AsyncConnection) -> dict[str, int]:
            return await queries.user_stats_for(conn, user_id)

        stats: dict[str, int] = await self._cached("get_user_stats", user_id, "", load)
        return stats

    # -- machinery ---------------------------------------------------------------

    async def _cached(
        self, tool: str, user_id: int, args: str, load: Callable[[AsyncConnection], Awaitable[T]]
    ) -> T:
        mark = await self._mark(user_id)
        key = f"{tool}:{user_id}:{mark:x}:{args}"

        async def load_consistent() -> T:
            return await self._read(mark, load)

        result: T = await self.cache.get_or_load(tool, key, load_consistent)
        return result

    async def _read(self, mark: int, load: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(self._replica_timeout), self._connect(self.replica) as conn:
                lag = 0
                if mark > self.watcher.known:
                    self.stats.ryw_waits += 1
                    lag = await self.watcher.wait_for(conn, mark, self._ryw_wait)
                if lag == 0:
                    return await load(conn)
        except TaskgateError:
            raise
        except (
            TimeoutError,
            OSError,
            DBAPIError,
            InterfaceError,
            OperationalError,
            PoolTimeout,
        ) as exc:
            self.stats.replica_errors += 1
            log.warning("replica read failed: %s", type(exc).__name__)
            if self.fallback is None:
                raise TaskgateError(
                    ErrorCode.REPLICA_UNAVAILABLE,
                    "the read replica is unavailable; retry shortly",
                    {"reason": type(exc).__name__},
                ) from None
            return await self._read_fallback(load)
        # The replica is up but has not replayed this user's last write within the bound.
        if self.fallback is not None:
            self.stats.ryw_fallbacks += 1
            return await self._read_fallback(load)
        self.stats.ryw_refusals += 1
        raise TaskgateError(
            ErrorCode.REPLICA_UNAVAILABLE,
            "the read replica is behind your last write; retry shortly",
            {"lag_bytes": lag, "waited_seconds": self._ryw_wait},
        )

    async def _read_fallback(self, load: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        assert self.fallback is not None
        try:
            async with asyncio.timeout(self._replica_timeout), self._connect(self.fallback) as conn:
                return await load(conn)
        except (
            TimeoutError,
            OSError,
            DBAPIError,
            InterfaceError,
            OperationalError,
            PoolTimeout,
        ) as exc:
            log.warning("fallback read failed: %s", type(exc).__name__)
            raise TaskgateError(
                ErrorCode.REPLICA_UNAVAILABLE,
                "neither the read replica nor the fallback can be reached; retry shortly",
                {"reason": type(exc).__name__},
            ) from None

    @asynccontextmanager
    async def _connect(self, engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
        async with engine.connect() as conn:
            yield conn
