"""Password hashing with argon2, under a concurrency cap shared fairly between logins and
sign-ups.

Each argon2 hash takes 64 MiB and tens of milliseconds of a core. Run without a bound, a burst
of logins or sign-ups takes every core and starves the event loop that serves task requests.
`PasswordHashing` runs at most PASSWORD_HASH_CONCURRENCY hashes at once, in a thread pool of
that size. Sign-ups (hash) hold at most half the slots (at least one), and a freed slot goes to
a waiting login (verify) before a waiting sign-up, so a flood of sign-ups cannot make logins
wait behind it. Each kind refuses with `rate_limited` once PASSWORD_HASH_QUEUE callers of that
kind already wait.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shared.errors import rate_limited
from shared.settings import Settings

T = TypeVar("T")

_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    # Verified against when the email is unknown, so a login takes as long either way.
    return _hasher.hash("taskgate-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        ok = _hasher.verify(password_hash or _dummy_hash(), password)
    except (VerificationError, InvalidHashError, UnicodeEncodeError):
        return False  # a password that is not valid Unicode text cannot match
    return ok and password_hash is not None


class _Lane:
    """Callers of one kind (logins or sign-ups) waiting for a slot, in order."""

    def __init__(self, name: str, cap: int, max_waiting: int) -> None:
        self.name = name
        self.cap = cap  # slots this kind may hold at once
        self.running = 0
        self.waiting: deque[asyncio.Future[None]] = deque()
        self.max_waiting = max_waiting


class PasswordHashing:
    """Hashes and verifies passwords off the event loop, at most `concurrency` at a time."""

    def __init__(self, settings: Settings) -> None:
        concurrency = settings.password_hash_concurrency
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="argon2")
        self._free = concurrency
        queue = settings.password_hash_queue
        self._logins = _Lane("logins", concurrency, queue)
        self._signups = _Lane("sign-ups", max(1, concurrency // 2), queue)

    async def hash(self, password: str) -> str:
        """A sign-up's (or a password change's) hash: the sign-up lane."""
        return await self._run(self._signups, hash_password, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """A login's check: the login lane, served first."""
        return await self._run(self._logins, verify_password, password_hash, password)

    def running(self) -> tuple[int, int]:
        """How many logins and sign-ups hash right now."""
        return self._logins.running, self._signups.running

    async def _run(self, lane: _Lane, work: Callable[..., T], *args: object) -> T:
        await self._acquire(lane)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)
        finally:
            self._release(lane)

    def _can_start(self, lane: _Lane) -> bool:
        return self._free > 0 and lane.running < lane.cap

    async def _acquire(self, lane: _Lane) -> None:
        if self._can_start(lane) and not lane.waiting:
            self._start(lane)
            return
        if len(lane.waiting) >= lane.max_waiting:
            raise rate_limited(f"too many {lane.name} at once", 1)
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.waiting.append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release(lane)  # granted just before the cancel: hand the slot on
            elif granted in lane.waiting:
                lane.waiting.remove(granted)
            raise

    def _start(self, lane: _Lane) -> None:
        self._free -= 1
        lane.running += 1

    def _release(self, lane: _Lane) -> None:
        self._free += 1
        lane.running -= 1
        for next_lane in (self._logins, self._signups):  # logins first
            while next_lane.waiting and self._can_start(next_lane):
                granted = next_lane.waiting.popleft()
                if not granted.cancelled():  # a cancelled waiter leaves on its own
                    self._start(next_lane)
                    granted.set_result(None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
