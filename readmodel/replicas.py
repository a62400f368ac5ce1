"""Which replica serves a read: healthy ones in turn, and one that has replayed the caller's mark.

Like GitLab's database load balancer, each replica's replay position is remembered, and a read
that must see a write (a mark) goes to a replica known to have replayed it. When none is known
to, every usable replica's position is polled (one shared poll per replica, however many reads
wait) until one has, or the wait bound passes.

A position is trusted only where it is the server's: with READ_DATABASE_URLS each URL is one
server, and its replay position only grows while it runs. A lone READ_DATABASE_URL may be a
pooler or load balancer, whose connections reach different servers: there no position is
shared, and the read checks on the connection that serves it (see checked_read).

A replica that fails is left out for 1 s, doubling up to REPLICA_RETRY_MAX_SECONDS, and one
whose sampled lag passes REPLICA_MAX_LAG_SECONDS is left out until a sample shows it caught up.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from readmodel.lag import ReplicaLag
from readmodel.lsn import parse_lsn
from readmodel.queries import replayed_lsn

T = TypeVar("T")

FIRST_RETRY_SECONDS = 1.0
POLL_FIRST_SECONDS = 0.005
POLL_MAX_SECONDS = 0.05
# A pooled connection that stays behind this long is closed, so the next one may reach a
# server (behind the pooler or balancer) that has caught up.
CONNECTION_PATIENCE_SECONDS = 0.1


def replica_labels(urls: list[str]) -> list[str]:
    """host:port per URL (never the password), or the index when two URLs share one."""
    labels = []
    for url in urls:
        parsed = make_url(url)
        labels.append(f"{parsed.host or 'local'}:{parsed.port or 5432}")
    if len(set(labels)) < len(labels):
        return [str(i) for i in range(len(urls))]
    return labels


@dataclass
class Replica:
    label: str
    engine: AsyncEngine
    # The highest replay position seen: the server's where each URL is one server; behind a
    # pooler, the highest seen on any connection (counters only, never trusted for a read).
    replayed: int = 0
    reads: int = 0
    errors: int = 0
    up: bool = True
    lagging: bool = False
    over_bound: bool = False  # the last sample's lag passed the bound
    lag: ReplicaLag | None = None
    retry_at: float = 0.0
    backoff: float = 0.0
    _poll: asyncio.Task[int] | None = field(default=None, repr=False)

    def usable(self, now: float) -> bool:
        return not self.lagging and now >= self.retry_at

    def failed(self, retry_max: float) -> None:
        self.errors += 1
        self.up = False
        # A restarted server may come back having replayed less than we saw.
        self.replayed = 0
        self.backoff = min(max(FIRST_RETRY_SECONDS, self.backoff * 2), retry_max)
        self.retry_at = time.monotonic() + self.backoff

    def answered(self) -> None:
        self.up = True
        self.backoff = 0.0
        self.retry_at = 0.0

    def saw(self, position: int) -> None:
        self.replayed = max(self.replayed, position)

    async def poll_position(self) -> int:
        """The server's replay position, asked once for every concurrent caller."""
        if self._poll is None:
            self._poll = asyncio.ensure_future(self._ask_position())
            self._poll.add_done_callback(self._polled)
        return await asyncio.shield(self._poll)

    def _polled(self, task: asyncio.Task[int]) -> None:
        self._poll = None
        if not task.cancelled():
            task.exception()  # retrieved: a failed poll is the waiters' to report

    async def _ask_position(self) -> int:
        async with self.engine.connect() as conn:
            position = await replayed_lsn(conn)
        if position is not None:
            self.saw(parse_lsn(position))
        return self.replayed


class ReplicaBehind(Exception):
    def __init__(self, replica: Replica, lag: int) -> None:
        super().__init__(f"replica {replica.label} is {lag} bytes behind")
        self.replica = replica
        self.lag = lag


class ReplicaSet:
    def __init__(
        self,
        replicas: list[Replica],
        *,
        servers: bool,
        max_lag_seconds: float,
        retry_max_seconds: float,
    ) -> None:
        if not replicas:
            raise ValueError("at least one replica")
        self.replicas = replicas
        self.servers = servers
        self.max_lag_seconds = max_lag_seconds
        self.retry_max_seconds = retry_max_seconds
        self._turn = itertools.count()

    @classmethod
    def of(
        cls,
        urls: list[str],
        make_engine: Callable[[str], AsyncEngine],
        *,
        servers: bool,
        max_lag_seconds: float,
        retry_max_seconds: float,
    ) -> ReplicaSet:
        labelled = zip(replica_labels(urls), urls, strict=True)
        return cls(
            [Replica(label, make_engine(url)) for label, url in labelled],
            servers=servers,
            max_lag_seconds=max_lag_seconds,
            retry_max_seconds=retry_max_seconds,
        )

    @property
    def first(self) -> Replica:
        return self.replicas[0]

    def _in_turn(self, candidates: list[Replica]) -> Replica:
        return candidates[next(self._turn) % len(candidates)]

    def usable(self) -> list[Replica]:
        now = time.monotonic()
        return [r for r in self.replicas if r.usable(now)]

    def least_bad(self) -> Replica:
        """When none is usable: the one not lagging that may be retried soonest."""
        return min(self.replicas, key=lambda r: (r.lagging, r.retry_at))

    async def choose(
        self, mark: int, bound: float, poll_timeout: float
    ) -> tuple[Replica | None, bool]:
        """A usable replica that has replayed `mark` (any usable one when mark is 0), and
        whether it took a wait to find one.

        None when no replica is usable. Raises ReplicaBehind when none replayed it in `bound`
        seconds. Without trusted positions, the caller checks on its connection instead.
        """
        usable = self.usable()
        if not usable:
            return None, False
        if mark <= 0 or not self.servers:
            return self._in_turn(usable), False
        caught_up = [r for r in usable if r.replayed >= mark]
        if caught_up:
            return self._in_turn(caught_up), False
        return await self._wait_for_one(usable, mark, bound, poll_timeout), True

    async def _wait_for_one(
        self, usable: list[Replica], mark: int, bound: float, poll_timeout: float
    ) -> Replica:
        deadline = time.monotonic() + bound
        interval = POLL_FIRST_SECONDS
        candidates = list(usable)
        while True:
            polls = {asyncio.ensure_future(r.poll_position()): r for r in candidates}
            done, pending = await asyncio.wait(polls, timeout=poll_timeout)
            for task in pending:  # a hung server: leave it out; its poll ends in the background
                task.cancel()
            alive = []
            for task, replica in polls.items():
                failure = task.exception() if task in done else TimeoutError()
                if isinstance(failure, PoolTimeout):
                    raise failure  # the gateway is overloaded, not the replica failing
                if failure is None:
                    alive.append(replica)
                else:
                    replica.failed(self.retry_max_seconds)
            caught_up = [r for r in alive if r.replayed >= mark]
            if caught_up:
                return self._in_turn(caught_up)
            if not alive:
                raise ReplicaBehind(candidates[0], mark)  # all failed while polled
            candidates = alive
            if time.monotonic() >= deadline:
                best = max(alive, key=lambda r: r.replayed)
                raise ReplicaBehind(best, mark - best.replayed)
            await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(interval * 2, POLL_MAX_SECONDS)

    def sampled(self, replica: Replica, lag: ReplicaLag | None) -> None:
        """A lag sample (None: the replica did not answer) updates the replica's standing."""
        if lag is None:
            replica.failed(self.retry_max_seconds)
            return
        replica.lag = lag
        replica.answered()
        # Two samples in a row: after an idle spell the first new WAL makes the age of the
        # last replayed transaction jump, though the replica replays it at once.
        over = lag.seconds > self.max_lag_seconds
        replica.lagging = over and replica.over_bound
        replica.over_bound = over
        if self.servers and lag.replayed:
            replica.saw(lag.replayed)


async def checked_read(
    replica: Replica,
    mark: int,
    bound: float,
    load: Callable[[AsyncConnection], Awaitable[T]],
    on_wait: Callable[[], None],
) -> T:
    """Read on a connection whose own server has replayed `mark`, checked in the same transaction.

    For a pooler or balancer in front of several servers: the check and the query share one
    transaction, so they run on one server, and the query's snapshot is taken after the check.
    A connection that stays behind is closed, so the next may reach a caught-up server.
    """
    deadline = time.monotonic() + bound
    interval = POLL_FIRST_SECONDS
    waited = False
    while True:
        async with replica.engine.connect() as conn:
            stuck_since = time.monotonic()
            while True:
                position = await replayed_lsn(conn)
                seen = parse_lsn(position) if position is not None else 0
                replica.saw(seen)  # for the counters only: not trusted where it is a pooler
                if seen >= mark:
                    return await load(conn)
                if waited is False:
                    waited = True
                    on_wait()
                await conn.rollback()
                now = time.monotonic()
                if now >= deadline:
                    raise ReplicaBehind(replica, mark - seen)
                await asyncio.sleep(min(interval, deadline - now))
                interval = min(interval * 2, POLL_MAX_SECONDS)
                if time.monotonic() - stuck_since >= CONNECTION_PATIENCE_SECONDS:
                    await conn.invalidate()
                    break
