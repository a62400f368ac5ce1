"""The read path's one entry point: cache, then a replica that has replayed the caller's mark.

A write through the gateway leaves a mark (its commit LSN) for its user (readmodel.marks), in
this process and in Redis when gateways share one. Cache keys include the mark, so the write
makes that user's older entries unreachable at once, in every gateway that shares the cache. A
read that carries a mark goes to a replica that has replayed it (readmodel.replicas), waiting a
bounded time for one to, then to the primary fallback, or answers replica_unavailable.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from readmodel import queries
from readmodel.cache import ReadCache
from readmodel.lsn import format_lsn, parse_lsn
from readmodel.marks import Marks, MarksUnknown, ReadMark
from readmodel.replicas import Replica, ReplicaBehind, ReplicaSet, checked_read
from shared.cursor import Keyset, decode_cursor, encode_cursor
from shared.errors import ErrorCode, TaskgateError, rate_limited
from shared.rules import LIMIT_MAX, LIMIT_MIN, MAX_ID, STATUSES, Status

log = logging.getLogger(__name__)

T = TypeVar("T")
# What a read or a dead connection raises: each becomes replica_unavailable, never a 500.
# Not PoolTimeout: a read that found no free connection in time met an overloaded gateway, not
# a failing replica; _cached answers it as rate_limited.
_DB_FAULTS = (TimeoutError, OSError, DBAPIError, InterfaceError, OperationalError)
# What an overloaded gateway asks the caller to wait before retrying.
OVERLOAD_RETRY_AFTER_SECONDS = 1.0


@dataclass
class ReadStats:
    ryw_waits: int = 0
    ryw_fallbacks: int = 0
    ryw_refusals: int = 0
    replica_errors: int = 0
    pool_timeouts: int = 0  # reads that found no free connection in time (rate_limited)


@dataclass(frozen=True)
class CachedRead:
    """A read tool's cached answer: its cache key and the encoded value the cache holds."""

    key: str
    stored: bytes


# What get_task caches for an id that is not the caller's (encode_entry({})).
_EMPTY = b"{}"


def _key(tool: str, user_id: int, mark: ReadMark, args: str) -> str:
    # The mark is part of the key: a write makes the user's older entries unreachable.
    return f"{tool}:{user_id}:{mark.position:x}:{args}"


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


class TaskReader:
    def __init__(
        self,
        replicas: ReplicaSet,
        cache: ReadCache,
        cursor_secret: bytes,
        ryw_wait_timeout: float,
        replica_timeout: float,
        fallback: AsyncEngine | None = None,
        marks: Marks | None = None,
    ) -> None:
        self.replicas = replicas
        self.fallback = fallback
        self.cache = cache
        self.marks = marks or Marks()
        self.stats = ReadStats()
        self._secret = cursor_secret
        self._ryw_wait = ryw_wait_timeout
        self._replica_timeout = replica_timeout

    @property
    def replica(self) -> AsyncEngine:
        """The first replica's engine."""
        return self.replicas.first.engine

    # -- writes leave marks ------------------------------------------------------

    async def note_write(self, user_id: int, commit_lsn: str) -> None:
        try:
            position = parse_lsn(commit_lsn)
        except ValueError:
            # The write is done; failing the tool now would invite the agent to repeat it.
            log.warning("backend sent a malformed commit LSN; this write leaves no mark")
            return
        await self.marks.raise_mark(user_id, position)

    async def _mark(self, user_id: int) -> ReadMark:
        try:
            return await self.marks.mark_for(user_id)
        except MarksUnknown:
            raise TaskgateError(
                ErrorCode.REPLICA_UNAVAILABLE,
                "cannot tell yet whether the replicas have your last write; retry shortly",
                {"reason": "marks_lost"},
            ) from None

    # -- the read tools ----------------------------------------------------------

    async def list_tasks(
        self, user_id: int, status: Status, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        args, after = self._list_tasks_args(status, limit, cursor)

        async def load(conn: AsyncConnection) -> dict[str, Any]:
            # One row more than asked says whether a next page exists, so the last page has
            # no cursor to an empty page.
            rows = await queries.list_tasks_for(conn, user_id, status, limit + 1, after)
            page, more = rows[:limit], len(rows) > limit
            next_cursor = None
            if more:
                last = page[-1]
                next_cursor = encode_cursor(
                    self._secret, status, Keyset(last["created_at"], last["id"])
                )
            return {"tasks": [_jsonable(r) for r in page], "next_cursor": next_cursor}

        result: dict[str, Any] = await self._cached("list_tasks", user_id, args, load)
        return result

    def _list_tasks_args(
        self, status: Status, limit: int, cursor: str | None
    ) -> tuple[str, Keyset | None]:
        """list_tasks' arguments checked, as their cache key part and the decoded keyset."""
        if status not in STATUSES:
            raise TaskgateError(
                ErrorCode.VALIDATION_ERROR,
                f"status must be {', '.join(map(repr, STATUSES[:-1]))} or {STATUSES[-1]!r}",
                {"field": "status"},
            )
        if not LIMIT_MIN <= limit <= LIMIT_MAX:
            raise TaskgateError(
                ErrorCode.VALIDATION_ERROR,
                f"limit must be between {LIMIT_MIN} and {LIMIT_MAX}",
                {"field": "limit"},
            )
        after = decode_cursor(self._secret, status, cursor) if cursor is not None else None
        # The key holds the decoded keyset, never the cursor's text: the decoder is lenient
        # (padding, stray characters), and one page must not fill many keys.
        keyset = None if after is None else [after.created_at.isoformat(), after.id]
        return json.dumps([status, limit, keyset]), after

    async def get_task(self, user_id: int, task_id: int) -> dict[str, Any]:
        args = self._get_task_args(task_id)

        async def load(conn: AsyncConnection) -> dict[str, Any]:
            row = await queries.get_task_for(conn, user_id, task_id)
            # A miss is cached too ({}), so probing for ids does not reach the replica each time.
            return _jsonable(row) if row else {}

        task: dict[str, Any] = await self._cached("get_task", user_id, args, load)
        if not task:
            raise TaskgateError(
                ErrorCode.NOT_FOUND, f"task {task_id} not found", {"task_id": task_id}
            )
        return task

    @staticmethod
    def _get_task_args(task_id: int) -> str:
        if not 1 <= task_id <= MAX_ID:
            raise TaskgateError(
                ErrorCode.VALIDATION_ERROR, "task_id must be a positive id", {"field": "task_id"}
            )
        return str(task_id)

    async def get_user_stats(self, user_id: int) -> dict[str, int]:
        async def load(conn: AsyncConnection) -> dict[str, int]:
            return await queries.user_stats_for(conn, user_id)

        stats: dict[str, int] = await self._cached("get_user_stats", user_id, "", load)
        return stats

    # -- cache hits alone (gateway.fast_path) -----------------------------------------

    async def cached_list_tasks(
        self, user_id: int, status: Status, limit: int, cursor: str | None
    ) -> CachedRead | None:
        """What list_tasks would answer from the cache, or None; never reads the database."""
        args, _ = self._list_tasks_args(status, limit, cursor)
        return await self._peek("list_tasks", user_id, args)

    async def cached_get_task(self, user_id: int, task_id: int) -> CachedRead | None:
        """What get_task would answer from the cache, or None. A cached miss is None too:
        its not_found is get_task's to raise."""
        hit = await self._peek("get_task", user_id, self._get_task_args(task_id))
        return None if hit is None or hit.stored == _EMPTY else hit

    async def cached_user_stats(self, user_id: int) -> CachedRead | None:
        return await self._peek("get_user_stats", user_id, "")

    async def _peek(self, tool: str, user_id: int, args: str) -> CachedRead | None:
        key = _key(tool, user_id, await self._mark(user_id), args)
        stored = await self.cache.peek(tool, key)
        return None if stored is None else CachedRead(key, stored)

    # -- machinery ---------------------------------------------------------------

    async def _cached(
        self, tool: str, user_id: int, args: str, load: Callable[[AsyncConnection], Awaitable[T]]
    ) -> T:
        mark = await self._mark(user_id)
        key = _key(tool, user_id, mark, args)

        async def load_consistent() -> T:
            return await self._read(mark, load)

        try:
            result: T = await self.cache.get_or_load(tool, key, load_consistent)
        except PoolTimeout:
            self.stats.pool_timeouts += 1
            raise rate_limited(
                "the gateway is overloaded: no database connection was free in time",
                OVERLOAD_RETRY_AFTER_SECONDS,
                "overloaded",
            ) from None
        return result

    async def _read(
        self, read_mark: ReadMark, load: Callable[[AsyncConnection], Awaitable[T]]
    ) -> T:
        """Read from a replica that has replayed the mark, else from the fallback, else fail.

        Connecting and querying get REPLICA_TIMEOUT in all; waiting for replay gets
        RYW_WAIT_TIMEOUT on top, so a dead or hung replica answers within REPLICA_TIMEOUT.
        A replica that refuses at once (it is down) is left out, and another usable one is
        tried in the same call.
        """
        mark = read_mark.position
        while True:
            try:
                replica, waited = await self.replicas.choose(
                    mark, self._ryw_wait, self._replica_timeout
                )
            except ReplicaBehind as behind:
                self.stats.ryw_waits += read_mark.own
                return await self._behind(behind, mark, load)
            # Counted for the caller's own writes only, not for a floor standing in for marks.
            self.stats.ryw_waits += waited and read_mark.own
            if replica is None:  # every replica is out (failed or too far behind)
                if self.fallback is not None:
                    return await self._read_fallback(load)
                replica = self.replicas.least_bad()
            try:
                return await self._read_on_replica(replica, read_mark, load)
            except _DB_FAULTS as exc:
                self.stats.replica_errors += 1
                replica.failed(self.replicas.retry_max_seconds)
                log.warning("replica %s read failed: %s", replica.label, type(exc).__name__)
                # A timeout has spent the budget; a refusal has not, if another can serve.
                if not isinstance(exc, TimeoutError) and self.replicas.usable():
                    continue
                if self.fallback is None:
                    raise TaskgateError(
                        ErrorCode.REPLICA_UNAVAILABLE,
                        "the read replica is unavailable; retry shortly",
                        {"reason": type(exc).__name__},
                    ) from None
                return await self._read_fallback(load)
            except ReplicaBehind as behind:
                return await self._behind(behind, mark, load)

    async def _read_on_replica(
        self, replica: Replica, read_mark: ReadMark, load: Callable[[AsyncConnection], Awaitable[T]]
    ) -> T:
        mark = read_mark.position
        # The read checks on its own connection where positions are not the server's (a
        # pooler), and where the replica is not known to have replayed the mark (every replica
        # was out, and this one is tried anyway).
        check = mark > (replica.replayed if self.replicas.servers else 0)
        if check and read_mark.own and mark > replica.replayed:  # newer than any it showed
            self.stats.ryw_waits += 1
        # The wait for replay is added once the replica has answered that it is behind, so a
        # hung replica still answers within REPLICA_TIMEOUT.
        is_behind = asyncio.Event()
        work = self._read_replica_once_more(replica, mark, check, load, is_behind)
        result = await _within(self._replica_timeout, work, is_behind, self._ryw_wait)
        replica.reads += 1
        replica.answered()
        return result

    async def _behind(
        self, behind: ReplicaBehind, mark: int, load: Callable[[AsyncConnection], Awaitable[T]]
    ) -> T:
        """No replica has replayed this user's last write within the bound."""
        if self.fallback is not None:
            self.stats.ryw_fallbacks += 1
            return await self._read_fallback(load)
        self.stats.ryw_refusals += 1
        raise TaskgateError(
            ErrorCode.REPLICA_UNAVAILABLE,
            "the read replica has not caught up with your last write yet; retry shortly",
            {
                "lag_bytes": behind.lag,
                "waited_seconds": self._ryw_wait,
                "replayed_lsn": format_lsn(max(0, mark - behind.lag)),
                "write_lsn": format_lsn(mark),
            },
        )

    async def _read_replica_once_more(
        self,
        replica: Replica,
        mark: int,
        check: bool,
        load: Callable[[AsyncConnection], Awaitable[T]],
        behind: asyncio.Event,
    ) -> T:
        try:
            return await self._read_replica(replica, mark, check, load, behind)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        # A pooled connection the replica dropped (it restarted): SQLAlchemy has invalidated
        # the pool, so one retry, in the same budget, gets a fresh connection. What we knew of
        # the server's position is void: it may have restarted behind it.
        replica.replayed = 0
        return await self._read_replica(replica, mark, check, load, behind)

    async def _read_replica(
        self,
        replica: Replica,
        mark: int,
        check: bool,
        load: Callable[[AsyncConnection], Awaitable[T]],
        behind: asyncio.Event,
    ) -> T:
        if not check:
            return await self._read_on(replica.engine, load)

        return await checked_read(replica, mark, self._ryw_wait, load, behind.set)

    async def _read_fallback(self, load: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        assert self.fallback is not None
        try:
            return await _within(self._replica_timeout, self._read_on(self.fallback, load))
        except _DB_FAULTS as exc:
            log.warning("fallback read failed: %s", type(exc).__name__)
            raise TaskgateError(
                ErrorCode.REPLICA_UNAVAILABLE,
                "neither the read replica nor the fallback can be reached; retry shortly",
                {"reason": type(exc).__name__},
            ) from None

    @staticmethod
    async def _read_on(engine: AsyncEngine, load: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async with engine.connect() as conn:
            return await load(conn)


async def _within(
    seconds: float,
    work: Coroutine[Any, Any, T],
    extend: asyncio.Event | None = None,
    extra: float = 0.0,
) -> T:
    """`work`'s result, or TimeoutError after `seconds` at the latest (`seconds` + `extra` once
    `extend` is set: the server answered, and the work waits for it to catch up).

    Unlike asyncio.timeout, this does not wait for the work to clean up once cancelled: giving
    a connection back means a rollback, which a hung server never answers. The cancelled work
    finishes in the background, when the server answers or its socket dies.
    """
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
        if not done and extend is not None and extend.is_set():
            done, _ = await asyncio.wait({task}, timeout=extra)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_forget)
        raise TimeoutError
    return task.result()


def _forget(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so an abandoned read's failure is not logged as unhandled
