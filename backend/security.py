"""Password hashing with argon2, under a concurrency cap.

Each argon2 hash takes 64 MiB and tens of milliseconds of a core. Run without a bound, a burst
of logins or sign-ups takes every core and starves the event loop that serves task requests.
`PasswordHashing` runs at most PASSWORD_HASH_CONCURRENCY hashes at once, in a thread pool of
that size, and refuses with `rate_limited` once PASSWORD_HASH_QUEUE callers already wait.
"""

from __future__ import annotations

import asyncio
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


class PasswordHashing:
    """Hashes and verifies passwords off the event loop, at most `concurrency` at a time."""

    def __init__(self, settings: Settings) -> None:
        concurrency = settings.password_hash_concurrency
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="argon2")
        self._slots = asyncio.Semaphore(concurrency)
        self._max_waiting = settings.password_hash_queue
        self._waiting = 0

    async def hash(self, password: str) -> str:
        return await self._run(hash_password, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        return await self._run(verify_password, password_hash, password)

    async def _run(self, work: Callable[..., T], *args: object) -> T:
        if self._slots.locked() and self._waiting >= self._max_waiting:
            raise rate_limited("too many logins at once", 1)
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)
        finally:
            self._slots.release()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
