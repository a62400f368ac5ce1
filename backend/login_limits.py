"""Login throttling: failed logins back off per account and per client address.

Every login form calls the same three steps (`POST /api/v1/auth/token` today, the OAuth login
page next):

    limits.begin(email, address)      # rate_limited while either key is backing off
    user = await users.authenticate(...)
    limits.succeeded(email, address)  # only on success; a failure stays counted

An attempt is counted when it begins, before the password is hashed, so parallel guesses
cannot slip past the limit while the first ones are still being verified; a success takes
its own count back. A blocked attempt is refused before any hashing, so it costs no CPU.

State is two bounded tables (`LOGIN_LIMIT_ENTRIES` each, keyed by a 16-byte digest, so a
320-character email costs what a short one does). A key is forgotten
`LOGIN_FAILURE_WINDOW_SECONDS` after its last failure, or when the table is full and it is
the least recently used.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from cachetools import TTLCache
from starlette.requests import Request

from shared.errors import rate_limited
from shared.settings import Settings

T = TypeVar("T")


@dataclass(slots=True)
class _Failures:
    count: int = 0
    blocked_until: float = 0.0


class _Table:
    """Failures per key, with exponential back-off once `free` attempts are used up."""

    def __init__(self, settings: Settings, free: int, clock: Callable[[], float]) -> None:
        ttl = max(settings.login_failure_window_seconds, settings.login_backoff_max_seconds)
        self._entries: TTLCache[bytes, _Failures] = TTLCache(
            maxsize=settings.login_limit_entries, ttl=ttl, timer=clock
        )
        self._free = free
        self._base = settings.login_backoff_seconds
        self._max = settings.login_backoff_max_seconds
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def retry_after(self, key: bytes) -> float:
        entry = self._entries.get(key)
        return max(0.0, entry.blocked_until - self._clock()) if entry else 0.0

    def count_attempt(self, key: bytes) -> None:
        entry = self._entries.get(key) or _Failures()
        entry.count += 1
        if entry.count >= self._free:
            over = entry.count - self._free
            entry.blocked_until = self._clock() + min(self._base * 2.0**over, self._max)
        self._entries[key] = entry  # re-set: the window restarts at the latest failure

    def take_back(self, key: bytes) -> None:
        entry = self._entries.get(key)
        if entry is None:
            return
        entry.count = max(0, entry.count - 1)
        if entry.count < self._free:
            entry.blocked_until = 0.0

    def forget(self, key: bytes) -> None:
        self._entries.pop(key, None)


def _key(kind: str, value: str) -> bytes:
    return hashlib.blake2b(f"{kind}:{value}".encode(), digest_size=16).digest()


def _account(email: str) -> bytes:
    # The same normalisation as users.authenticate, so case and spaces do not reset the count.
    return _key("account", email.strip().lower())


def _address(address: str) -> bytes:
    return _key("address", address)


class LoginLimits:
    """Per-account and per-address login back-off. One per backend process (app.state)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self._accounts = _Table(settings, settings.login_account_failures, clock)
        self._addresses = _Table(settings, settings.login_address_failures, clock)

    def begin(self, email: str, address: str) -> None:
        """Count a login attempt, or raise `rate_limited` while the account or address waits."""
        account, client = _account(email), _address(address)
        wait = max(self._accounts.retry_after(account), self._addresses.retry_after(client))
        if wait > 0:
            raise rate_limited("too many failed logins", math.ceil(wait))
        self._accounts.count_attempt(account)
        self._addresses.count_attempt(client)

    def succeeded(self, email: str, address: str) -> None:
        """The password was right: the account starts afresh, the address gets this one back."""
        self._accounts.forget(_account(email))
        self._addresses.take_back(_address(address))

    async def attempt(self, email: str, address: str, log_in: Callable[[], Awaitable[T]]) -> T:
        """`log_in()` within the limits: counted before, forgiven only when it succeeds."""
        self.begin(email, address)
        result = await log_in()
        self.succeeded(email, address)
        return result

    def tracked(self) -> tuple[int, int]:
        """How many accounts and addresses are tracked (each at most LOGIN_LIMIT_ENTRIES)."""
        return len(self._accounts), len(self._addresses)


def client_address(request: Request) -> str:
    """The socket's peer. uvicorn rewrites it from X-Forwarded-For only for TRUSTED_PROXIES."""
    return request.client.host if request.client else "unknown"
