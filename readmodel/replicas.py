"""Which replica serves a read: healthy ones in turn, and one that has replayed the caller's mark.

Like GitLab's database load balancer, each replica's replay position is remembered, and a read
that must see a write (a mark) goes to a replica known to have replayed it. When none is known
to, every usable replica's position is polled (one shared poll per replica, however many reads
wait) until one has, or the wait bound passes.

Most reads right after a write find the mark replayed at the first ask. One that does not
waits in the replica, not in the gateway: a statement that asks the position again every
millisecond until it reaches the mark or a short slice passes. Replay on one machine takes
about a millisecond, so such a read waits about that long, where polling from the gateway (5 ms
of sleep, doubling, a round trip per ask) made it wait 5 ms or more. A slice is short because
its statement holds a snapshot, which may delay a conflicting replay record by as much.

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

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from readmodel.lag import ReplicaLag
from readmodel.lsn import format_lsn, parse_lsn
from readmodel.queries import replayed_lsn

T = TypeVar("T")

FIRST_RETRY_SECONDS = 1.0
# The longest one waiting statement runs; then its snapshot is let go, and it runs again.
WAIT_SLICE_SECONDS = 0.02
# pg_sleep sleeps whole milliseconds.
WAIT_STEP_SECONDS = 0.001
# A pooled connection that stays behind this long is closed, so the next one may reach a
# server (behind the pooler or balancer) that has caught up.
CONNECTION_PATIENCE_SECONDS = 0.1

# The server's replay position (on a primary, the fallback: its current WAL position), asked
# again every millisecond until it reaches :mark or :slice seconds pass. pg_sleep sits in the
# target list, so each step runs it afresh (a function scan would be rewound, not rerun).
_POSITION = (
    "COALESCE(pg_last_wal_replay_lsn(), "
    "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END)"
)
_WAIT_REPLAYED = text(
    f"""
    WITH RECURSIVE step(n, replayed) AS (
        SELECT 0, {_POSITION}
      UNION ALL
        SELECT n + 1, CASE WHEN pg_sleep(:step)::text IS NOT NULL THEN {_POSITION} END
        FROM step
        WHERE NOT coalesce(replayed >= CAST(CAST(:mark AS text) AS pg_lsn), false)
          AND clock_timestamp() < statement_timestamp() + make_interval(secs => :slice)
    )
    SELECT replayed::text AS replayed, n AS steps FROM step ORDER BY n DESC LIMIT 1
    """
)


async def wait_replayed(conn: AsyncConnection, mark: int, within: float) -> tuple[int, bool]:
    """The server's replay position once it reaches `mark` (or `within` seconds pass, at most
    WAIT_SLICE_SECONDS), and whether it had to wait.

    One round trip when the server has replayed the mark already (as it has for most reads),
    with the simplest statement; two when it has not, the second waiting in the server.
    """
    asked = await replayed_lsn(conn)
    position = parse_lsn(asked) if asked is not None else 0
    if position >= mark or within <= 0:
        return position, False
    row = (
        await conn.execute(
            _WAIT_REPLAYED,
            {
                "mark": format_lsn(max(0, mark)),
                "step": WAIT_STEP_SECONDS,
                "slice": max(0.0, min(within, WAIT_SLICE_SECONDS)),
            },
        )
    ).one()
    return (parse_lsn(row.replayed) if row.replayed is not None else 0), True


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

    async def poll_position(self, mark: int, within: float) -> int:
        """The server's replay position, asked once for every concurrent caller: it waits in
        the server until the first caller's mark is replayed (or `within`, at most a slice)."""
        if self._poll is None:
            self._poll = asyncio.ensure_future(self._ask_position(mark, within))
            self._poll.add_done_callback(self._polled)
        return await asyncio.shield(self._poll)

    def _polled(self, task: asyncio.Task[int]) -> None:
        self._poll = None
        if not task.cancelled():
            task.exception()  # retrieved: a failed poll is the waiters' to report

    async def _ask_position(self, mark: int, within: float) -> int:
        async with self.engine.connect() as conn:
            position, _ = await wait_replayed(conn, mark, within)
        self.saw(position)
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
        candidates = list(usable)
        while True:
            within = max(0.0, deadline - time.monotonic())
            polls = {asyncio.ensure_future(r.poll_position(mark, within)): r for r in candidates}
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
    told = False
    while True:
        async with replica.engine.connect() as conn:
            # Reads run outside transactions (readmodel.engine): this one needs one.
            await conn.execution_options(isolation_level="READ COMMITTED")
            stuck_since = time.monotonic()
            while True:
                # A slice is far below REPLICA_TIMEOUT; on_wait then extends it by `bound`.
                within = max(0.0, deadline - time.monotonic())
                seen, waited = await wait_replayed(conn, mark, within)
                replica.saw(seen)  # for the counters only: not trusted where it is a pooler
                if (waited or seen < mark) and not told:
                    told = True
                    on_wait()
                if seen >= mark:
                    # The same transaction: this statement's snapshot is taken after the check.
                    return await load(conn)
                await conn.rollback()  # no snapshot held between slices
                if time.monotonic() >= deadline:
                    raise ReplicaBehind(replica, mark - seen)
                if time.monotonic() - stuck_since >= CONNECTION_PATIENCE_SECONDS:
                    await conn.invalidate()
                    break
