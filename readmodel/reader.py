"""The read path's one entry point: cache, then a replica that has replayed the caller's mark.

A write through the gateway leaves a mark (its commit LSN) for its user (readmodel.marks), in
this process and in Redis when gateways share one. Cache keys include the mark, so the write
makes that user's older entries unreachable at once, in every gateway that shares the cache. A
read that carries a mark goes to a replica that has replayed it (readmodel.replicas), waiting a
bounded time for one to, then to the primary fallback, or answers replica_unavailable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from readmodel.cache import ReadCache
from readmodel.lsn import format_lsn, parse_lsn
from readmodel.marks import Marks, MarksUnknown, ReadMark
from readmodel.reads import CompiledRead, ReadTools, jsonable_rows
from readmodel.replicas import Replica, ReplicaBehind, ReplicaSet, checked_read
from shared.errors import ErrorCode, TaskgateError, rate_limited
from shared.user_ids import UserId

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


# What a "one" tool caches for an id that is not the caller's (encode_entry({})).
_EMPTY = b"{}"


def _key(tool: str, user_id: UserId, mark: ReadMark, args: str) -> str:
    # The mark is part of the key: a write makes the user's older entries unreachable.
    return f"{tool}:{user_id}:{mark.position:x}:{args}"


def _missing(read: CompiledRead, args: Mapping[str, Any]) -> str:
    try:
        return read.tool.missing.format(**args)
    except (KeyError, IndexError, ValueError):
        return read.tool.missing


class Reader:
    """Answers a spec's read tools (readmodel.reads) for one caller at a time."""

    def __init__(
        self,
        tools: ReadTools,
        replicas: ReplicaSet,
        cache: ReadCache,
        cursor_secret: bytes,
        ryw_wait_timeout: float,
        replica_timeout: float,
        fallback: AsyncEngine | None = None,
        marks: Marks | None = None,
    ) -> None:
        self.tools = tools
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

    async def note_write(self, user_id: UserId, commit_lsn: str) -> None:
        try:
            position = parse_lsn(commit_lsn)
        except ValueError:
            # The write is done; failing the tool now would invite the agent to repeat it.
            log.warning("backend sent a malformed commit LSN; this write leaves no mark")
            return
        await self.marks.raise_mark(user_id, position)

    async def _mark(self, user_id: UserId) -> ReadMark:
        try:
            return await self.marks.mark_for(user_id)
        except MarksUnknown:
            raise TaskgateError(
                ErrorCode.REPLICA_UNAVAILABLE,
                "cannot tell yet whether the replicas have your last write; retry shortly",
                {"reason": "marks_lost"},
            ) from None

    # -- the read tools ----------------------------------------------------------

    def tool(self, name: str) -> CompiledRead:
        try:
            return self.tools[name]
        except KeyError:
            raise TaskgateError(
                ErrorCode.NOT_FOUND, f"unknown read tool: {name[:100]}", {"tool": name[:100]}
            ) from None

    async def read(
        self, name: str, user_id: UserId, arguments: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The tool's answer for the caller: from the cache, else from a replica that has
        replayed the caller's writes. Arguments are checked by the tool's own model."""
        read = self.tool(name)
        args = read.checked(arguments)
        after = read.cursor_after(self._secret, args) if read.tool.shape == "page" else None

        async def load(conn: AsyncConnection) -> dict[str, Any]:
            return await self._load(conn, read, user_id, args, after)

        key_part = read.key_part(args, after)
        result: dict[str, Any] = await self._cached(name, user_id, key_part, load)
        if read.tool.shape == "one" and not result:
            raise TaskgateError(ErrorCode.NOT_FOUND, _missing(read, args), args)
        return result

    async def _load(
        self,
        conn: AsyncConnection,
        read: CompiledRead,
        user_id: UserId,
        args: dict[str, Any],
        after: tuple[Any, ...] | None,
    ) -> dict[str, Any]:
        result = await conn.execute(read.statement(user_id, args, after))
        keys, rows = tuple(result.keys()), result.all()
        shape = read.tool.shape
        if shape in ("one", "row"):
            # A miss is cached too ({}), so probing for ids does not reach the replica each time.
            return jsonable_rows(keys, rows[:1], read.uuid_values)[0] if rows else {}
        # One row more than asked says whether a next page exists, so the last page has no
        # cursor to an empty page.
        limit = args["limit"]
        page, more = rows[:limit], len(rows) > limit
        next_cursor = read.next_cursor(self._secret, args, page[-1]._mapping) if more else None
        return {
            read.tool.items: jsonable_rows(keys, page, read.uuid_values),
            "next_cursor": next_cursor,
        }

    # -- cache hits alone (gateway.fast_path) -----------------------------------------

    async def cached(
        self, name: str, user_id: UserId, arguments: Mapping[str, Any]
    ) -> CachedRead | None:
        """What `read` would answer from the cache, or None; never reads the database. A cached
        miss of a "one" tool is None too: its not_found is `read`'s to raise."""
        read = self.tool(name)
        args = read.checked(arguments)
        after = read.cursor_after(self._secret, args) if read.tool.shape == "page" else None
        key = _key(name, user_id, await self._mark(user_id), read.key_part(args, after))
        stored = await self.cache.peek(name, key)
        if stored is None or (read.tool.shape == "one" and stored == _EMPTY):
            return None
        return CachedRead(key, stored)

    # -- machinery ---------------------------------------------------------------

    async def _cached(
        self, tool: str, user_id: UserId, args: str, load: Callable[[AsyncConnection], Awaitable[T]]
    ) -> T:
        mark = await self._mark(user_id)
        key = _key(tool, user_id, mark, args)

        async def load_consistent() -> T:
            return await self._read_at_mark(mark, load)

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

    async def _read_at_mark(
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
                    return await self._read_from_fallback(load)
                replica = self.replicas.least_bad()
            try:
                return await self._read_from_replica(replica, read_mark, load)
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
                return await self._read_from_fallback(load)
            except ReplicaBehind as behind:
                return await self._behind(behind, mark, load)

    async def _read_from_replica(
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
        work = self._read_replica_retrying_dropped(replica, mark, check, load, is_behind)
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
            return await self._read_from_fallback(load)
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

    async def _read_replica_retrying_dropped(
        self,
        replica: Replica,
        mark: int,
        check: bool,
        load: Callable[[AsyncConnection], Awaitable[T]],
        behind: asyncio.Event,
    ) -> T:
        try:
            return await self._read_replica_checking_mark(replica, mark, check, load, behind)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        # A pooled connection the replica dropped (it restarted): SQLAlchemy has invalidated
        # the pool, so one retry, in the same budget, gets a fresh connection. What we knew of
        # the server's position is void: it may have restarted behind it.
        replica.replayed = 0
        return await self._read_replica_checking_mark(replica, mark, check, load, behind)

    async def _read_replica_checking_mark(
        self,
        replica: Replica,
        mark: int,
        check: bool,
        load: Callable[[AsyncConnection], Awaitable[T]],
        behind: asyncio.Event,
    ) -> T:
        if not check:
            return await self._run_on(replica.engine, load)

        return await checked_read(replica, mark, self._ryw_wait, load, behind.set)

    async def _read_from_fallback(self, load: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        assert self.fallback is not None
        try:
            return await _within(self._replica_timeout, self._run_on(self.fallback, load))
        except _DB_FAULTS as exc:
            log.warning("fallback read failed: %s", type(exc).__name__)
            raise TaskgateError(
                ErrorCode.REPLICA_UNAVAILABLE,
                "neither the read replica nor the fallback can be reached; retry shortly",
                {"reason": type(exc).__name__},
            ) from None

    @staticmethod
    async def _run_on(engine: AsyncEngine, load: Callable[[AsyncConnection], Awaitable[T]]) -> T:
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
