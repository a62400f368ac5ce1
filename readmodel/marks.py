"""Write marks: the commit LSN of each user's last write, which that user's next read must see.

Marks are not cache entries, and nothing that evicts cache entries may take them:
- In Redis they live in one hash (`taskgate-ryw:marks`), a key with no expiry, so no
  volatile-* policy can evict it, and it holds one field per user who wrote, never one per call.
- A missing mark must never read as "no write". The hash holds a `floor` field, written when
  the hash is (re)created: the primary's WAL position at that moment, which covers every write
  acknowledged before it. A hash without a floor (Redis restarted, flushed, or an allkeys-*
  policy evicted the hash) is a lost store: before anything is read from it, the floor is set
  again from the primary's current position, so every user's read then waits for at least that.
- While Redis cannot be read, other gateways' marks are unknown: a read then waits for the
  primary's current position (asked per read), which covers every write acknowledged so far.
- In one process (no Redis) the floor is taken from the primary at start, covering writes made
  through a previous process (if the backend is down then, no write can go through this one
  either; the floor is taken once it answers), and a mark dropped to keep the process's marks
  bounded is folded into the floor instead of forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from readmodel.redis_keys import MARKS_KEY
from shared.redis_timing import FAULT_BACKOFF_SECONDS, REDIS_OP_TIMEOUT_SECONDS
from shared.user_ids import UserId

log = logging.getLogger(__name__)

FLOOR_FIELD = "floor"
LOCAL_MARKS_MAX = 100_000

# The primary's current WAL position, for the floor. Wired by the composition root.
PrimaryPosition = Callable[[], Awaitable[int]]

# Fixed-width hex, so string order is LSN order inside Lua. allow-oom: a mark is written even
# when Redis is at maxmemory with nothing it may evict (Redis 7 script flags).
_RAISE = """#!lua flags=allow-oom
if redis.call('HEXISTS', KEYS[1], ARGV[3]) == 0 then
  return -1
end
local current = redis.call('HGET', KEYS[1], ARGV[1])
if (not current) or current < ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""
_RAISE_FLOOR = """#!lua flags=allow-oom
local current = redis.call('HGET', KEYS[1], ARGV[1])
if (not current) or current < ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return redis.call('HGET', KEYS[1], ARGV[1])
"""


class MarksUnknown(Exception):
    """The mark store was lost and the primary's position, to read safely again, is unknown."""


def encode(position: int) -> str:
    return f"{position:016x}"


def decode(value: object) -> int | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str) or len(value) != 16:
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


class LocalMarks:
    """This process's marks, bounded in count; a dropped mark raises the floor instead."""

    def __init__(self, max_users: int = LOCAL_MARKS_MAX) -> None:
        self.floor = 0
        self._marks: OrderedDict[UserId, int] = OrderedDict()
        self._max = max_users

    def raise_mark(self, user_id: UserId, position: int) -> None:
        if position <= self._marks.get(user_id, 0):
            return
        self._marks[user_id] = position
        self._marks.move_to_end(user_id)
        if len(self._marks) > self._max:
            _, dropped = self._marks.popitem(last=False)
            self.floor = max(self.floor, dropped)

    def mark_for(self, user_id: UserId) -> int:
        return max(self._marks.get(user_id, 0), self.floor)

    def own_mark(self, user_id: UserId) -> int:
        return self._marks.get(user_id, 0)


class RedisMarks:
    """The shared marks hash. Every call may raise a Redis error; Marks handles those."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._raise: AsyncScript = client.register_script(_RAISE)
        self._raise_floor: AsyncScript = client.register_script(_RAISE_FLOOR)

    @classmethod
    def from_url(cls, url: str) -> RedisMarks:
        return cls(
            aioredis.Redis.from_url(
                url,
                socket_timeout=REDIS_OP_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_OP_TIMEOUT_SECONDS,
            )
        )

    async def read(self, user_id: UserId) -> tuple[int | None, int]:
        """(floor, the user's mark); floor None means the store was lost."""
        floor, mark = await self.client.hmget(MARKS_KEY, [FLOOR_FIELD, str(user_id)])
        return decode(floor), decode(mark) or 0

    async def raise_mark(self, user_id: UserId, position: int) -> bool:
        """False when the store was lost (no floor): the caller restores the floor first."""
        args = [str(user_id), encode(position), FLOOR_FIELD]
        done = await self._raise(keys=[MARKS_KEY], args=args)
        return int(done) >= 0

    async def raise_floor(self, position: int) -> int:
        value = await self._raise_floor(keys=[MARKS_KEY], args=[FLOOR_FIELD, encode(position)])
        return decode(value) or position

    async def close(self) -> None:
        await self.client.aclose()


@dataclass(frozen=True)
class ReadMark:
    """What a read must see: `position`; `own` when that is the user's own last write (and not
    a floor standing in for marks that were lost or cannot be read)."""

    position: int
    own: bool


class PositionRounds:
    """The primary's position for many concurrent reads, in as few requests as is safe.

    A read may only use a position asked after it began (one asked earlier may predate a write
    acknowledged since), so a read that finds a request in flight waits for the next round,
    which starts when that one ends and serves everyone who arrived meanwhile.
    """

    def __init__(self, ask: PrimaryPosition) -> None:
        self._ask = ask
        self._current: asyncio.Task[int] | None = None
        self._following: asyncio.Task[int] | None = None

    async def position(self) -> int:
        if self._current is None:
            self._current = self._start(self._ask())
            return await asyncio.shield(self._current)
        if self._following is None:
            self._following = asyncio.ensure_future(self._after(self._current))
        return await asyncio.shield(self._following)

    def _start(self, asking: Awaitable[int]) -> asyncio.Task[int]:
        task = asyncio.ensure_future(asking)
        task.add_done_callback(self._ended)
        return task

    async def _after(self, previous: asyncio.Task[int]) -> int:
        await asyncio.wait({previous})
        return await self._ask()

    def _ended(self, task: asyncio.Task[int]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved: the callers report it
        if self._current is task:
            following, self._following = self._following, None
            self._current = following
            if following is not None:
                following.add_done_callback(self._ended)


class Marks:
    """Raise and read marks: in this process, and in Redis when gateways share one.

    Redis is the truth for every gateway; the local copy answers while Redis is faulty, and
    republishes a mark that Redis missed.
    """

    def __init__(
        self,
        shared: RedisMarks | None = None,
        primary_position: PrimaryPosition | None = None,
        max_local: int = LOCAL_MARKS_MAX,
    ) -> None:
        self.local = LocalMarks(max_local)
        self.shared = shared
        self._rounds = PositionRounds(primary_position) if primary_position else None
        self._local_floor_set = shared is not None  # with Redis, the floor lives there
        self._next_floor_try = 0.0
        self._floor_lock = asyncio.Lock()  # many reads find a lost store at once: one recovery
        self._down_until = 0.0
        self._last_fault_log = 0.0
        self._last_primary_log = 0.0
        self.faults = 0
        self.recoveries = 0

    async def prepare(self) -> None:
        """Take the floor at start-up (one process, no Redis): the primary's position covers
        every write acknowledged through this gateway's previous process."""
        await self._try_local_floor()

    async def _try_local_floor(self) -> None:
        # Without the backend, no write can go through this gateway either: reads go on with
        # the floor known so far, and the floor is asked again at most once a second.
        if self._local_floor_set or time.monotonic() < self._next_floor_try:
            return
        async with self._floor_lock:
            if self._local_floor_set:
                return
            try:
                self.local.floor = max(self.local.floor, await self._from_primary())
                self._local_floor_set = True
            except MarksUnknown:
                self._next_floor_try = time.monotonic() + 1.0

    async def raise_mark(self, user_id: UserId, position: int) -> None:
        self.local.raise_mark(user_id, position)
        if self.shared is None:
            return
        try:
            # Tried even while backing off: a mark is what makes other gateways wait.
            if not await self.shared.raise_mark(user_id, position):
                await self._recover()
                await self.shared.raise_mark(user_id, position)
        except MarksUnknown:
            log.warning("write mark not published: the mark store was lost")
        except Exception as exc:  # a Redis fault: the local mark stays, and is republished
            self._fault(exc)

    async def mark_for(self, user_id: UserId) -> ReadMark:
        """What a read by this user must see. Raises MarksUnknown when that cannot be known."""
        await self._try_local_floor()
        own = self.local.own_mark(user_id)
        local = ReadMark(max(own, self.local.floor), own >= self.local.floor and own > 0)
        if self.shared is None:
            return local
        if time.monotonic() < self._down_until:
            return await self._unshared(local)
        try:
            floor, shared = await self.shared.read(user_id)
            if floor is None:
                floor = await self._recover()
            if own > shared:
                # Publishing failed earlier (a Redis fault): publish again, for the others.
                await self.shared.raise_mark(user_id, own)
        except MarksUnknown:
            raise
        except Exception as exc:
            self._fault(exc)
            return await self._unshared(local)
        mine = max(own, shared)
        return ReadMark(max(mine, floor), mine >= floor and mine > 0)

    async def _unshared(self, local: ReadMark) -> ReadMark:
        # Other gateways' marks cannot be read: the primary's position now covers them all.
        position = await self._from_primary()
        return local if local.position >= position else ReadMark(position, False)

    async def _recover(self) -> int:
        assert self.shared is not None
        async with self._floor_lock:
            floor, _ = await self.shared.read(0)
            if floor is not None:  # another read of this gateway, or another gateway, did it
                return floor
            position = await self._from_primary()
            self.recoveries += 1
            floor = await self.shared.raise_floor(position)
        log.warning("the shared write-mark store was lost; reads wait for the primary's position")
        return floor

    async def _from_primary(self) -> int:
        if self._rounds is None:
            return 0  # tools and tests that build a reader with no primary behind it
        try:
            return await self._rounds.position()
        except Exception as exc:
            now = time.monotonic()
            if now - self._last_primary_log > 10:  # one line per 10 s while it lasts
                self._last_primary_log = now
                log.warning("primary position unavailable (%s)", type(exc).__name__)
            raise MarksUnknown from None

    def _fault(self, exc: BaseException) -> None:
        self.faults += 1
        now = time.monotonic()
        self._down_until = now + FAULT_BACKOFF_SECONDS
        if now - self._last_fault_log > 10:
            self._last_fault_log = now
            log.warning("mark store failed (%s); using this gateway's marks", type(exc).__name__)

    async def close(self) -> None:
        if self.shared is not None:
            await self.shared.close()
