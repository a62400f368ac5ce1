"""Login throttling: failed logins back off per account and per client address, and a browser
that has logged in before keeps an allowance of its own (OWASP's device cookie).

Every login form calls `limits.attempt(email, client, log_in)`:

- while the account or the address backs off, the attempt is refused with `rate_limited` before
  any hashing, so it costs no CPU;
- only failures are counted (a wrong password, not a full hashing queue). A success never adds
  to or extends a back-off: the account starts afresh (its owner knows the password), and the
  address keeps its failures until its window ends;
- past the free failures (LOGIN_ACCOUNT_FAILURES per account, LOGIN_ADDRESS_FAILURES per
  address) each failure waits LOGIN_BACKOFF_SECONDS, doubling per failure up to
  LOGIN_BACKOFF_MAX_SECONDS. Failures count within LOGIN_FAILURE_WINDOW_SECONDS of the first;
  then the count starts over;
- attempts in flight count against the free failures, so parallel guesses cannot slip past the
  limit while the first ones are still being verified (the refusal says retry in 1 s).

Device cookie: a success sets a signed cookie naming the account (by digest) and a random
device id. An attempt on that account that presents it is judged by that device's failures
alone, not by the account's or the address's: an attack on the account or on a shared address
does not lock out a browser that logged in before. A device that fails LOGIN_ACCOUNT_FAILURES
times backs off as an account does.

State is three bounded tables (LOGIN_LIMIT_ENTRIES each, keyed by a 16-byte digest, so a
320-character email costs what a short one does); the least recently used key goes first.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from cachetools import TTLCache
from starlette.requests import Request
from starlette.responses import Response

from shared.errors import ErrorCode, TaskgateError, rate_limited
from shared.settings import Settings

T = TypeVar("T")

DEVICE_COOKIE = "taskgate_device"
IN_FLIGHT_RETRY_SECONDS = 1


@dataclass(slots=True)
class _Failures:
    count: int = 0
    since: float = 0.0  # the first failure of the current window
    blocked_until: float = 0.0
    in_flight: int = 0


class _Table:
    """Failures per key, with exponential back-off once `free` failures are used up."""

    def __init__(self, settings: Settings, free: int, clock: Callable[[], float]) -> None:
        self._window = settings.login_failure_window_seconds
        ttl = self._window + settings.login_backoff_max_seconds
        self._entries: TTLCache[bytes, _Failures] = TTLCache(
            maxsize=settings.login_limit_entries, ttl=ttl, timer=clock
        )
        self._free = free
        self._base = settings.login_backoff_seconds
        self._max = settings.login_backoff_max_seconds
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def _current(self, key: bytes) -> _Failures:
        entry = self._entries.get(key) or _Failures()
        if entry.count and self._clock() - entry.since > self._window:
            entry.count = 0  # the window is over: the count starts again
        return entry

    def retry_after(self, key: bytes) -> float:
        entry = self._current(key)
        now = self._clock()
        if entry.blocked_until > now:
            return entry.blocked_until - now
        if entry.in_flight and entry.count + entry.in_flight >= self._free:
            return IN_FLIGHT_RETRY_SECONDS
        return 0.0

    def begin(self, key: bytes) -> None:
        entry = self._current(key)
        entry.in_flight += 1
        self._entries[key] = entry

    def end(self, key: bytes, failed: bool) -> None:
        entry = self._current(key)
        entry.in_flight = max(0, entry.in_flight - 1)
        if failed:
            now = self._clock()
            if entry.count == 0:
                entry.since = now
            entry.count += 1
            if entry.count >= self._free:
                wait = min(self._base * 2.0 ** (entry.count - self._free), self._max)
                entry.blocked_until = max(entry.blocked_until, now + wait)
        self._entries[key] = entry

    def forget(self, key: bytes) -> None:
        entry = self._entries.get(key)
        if entry is not None:  # attempts still in flight stay counted as such
            self._entries[key] = _Failures(in_flight=entry.in_flight)


def _key(kind: str, value: str) -> bytes:
    return hashlib.blake2b(f"{kind}:{value}".encode(), digest_size=16).digest()


def _account(email: str) -> bytes:
    # The same normalisation as users.authenticate, so case and spaces do not reset the count.
    return _key("account", email.strip().lower())


@dataclass(frozen=True)
class LoginClient:
    """Who attempts a login: the client's address, and its device cookie if it sent one."""

    address: str
    device_cookie: str | None = None


def client_address(request: Request) -> str:
    """The socket's peer. uvicorn rewrites it from X-Forwarded-For only for TRUSTED_PROXIES."""
    return request.client.host if request.client else "unknown"


def login_client(request: Request) -> LoginClient:
    return LoginClient(client_address(request), request.cookies.get(DEVICE_COOKIE))


class LoginLimits:
    """Per-account, per-address and per-device login back-off. One per backend process."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self._accounts = _Table(settings, settings.login_account_failures, clock)
        self._addresses = _Table(settings, settings.login_address_failures, clock)
        self._devices = _Table(settings, settings.login_account_failures, clock)
        secret = settings.jwt_secret.get_secret_value().encode()
        self._device_key = hmac.new(secret, b"taskgate-device-cookie", hashlib.sha256).digest()
        self._device_seconds = settings.login_device_cookie_days * 86400

    async def attempt(
        self, email: str, client: LoginClient, log_in: Callable[[], Awaitable[T]]
    ) -> T:
        """`log_in()` within the limits; raises `rate_limited` while a limit waits."""
        account = _account(email)
        device = self._device(account, client.device_cookie)
        judged = (
            [(self._devices, device)]
            if device is not None
            else [(self._accounts, account), (self._addresses, _key("address", client.address))]
        )
        wait = max(table.retry_after(key) for table, key in judged)
        if wait > 0:
            raise rate_limited("too many failed logins", math.ceil(wait))
        for table, key in judged:
            table.begin(key)
        failed = False
        try:
            result = await log_in()
        except TaskgateError as exc:
            failed = exc.code is ErrorCode.UNAUTHORIZED
            raise
        finally:
            for table, key in judged:
                table.end(key, failed)
        self._accounts.forget(account)
        if device is not None:
            self._devices.forget(device)
        return result

    def device_cookie(self, email: str) -> str:
        """A new device cookie for the account that just logged in."""
        device = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        payload = f"{device}.{_account(email).hex()}.{int(time.time())}"
        return f"{payload}.{self._mac(payload)}"

    def _device(self, account: bytes, cookie: str | None) -> bytes | None:
        """The device's table key, when `cookie` is a valid, unexpired one for `account`."""
        if not cookie or len(cookie) > 200:
            return None
        payload, _, mac = cookie.rpartition(".")
        parts = payload.split(".")
        if len(parts) != 3 or not hmac.compare_digest(self._mac(payload), mac):
            return None
        device, owner, issued = parts
        if owner != account.hex() or not issued.isdigit():
            return None
        if int(issued) + self._device_seconds < time.time():
            return None
        return _key("device", device)

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._device_key, payload.encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def remember_device(self, response: Response, request: Request, email: str) -> None:
        """Set the device cookie on a successful login's response."""
        response.set_cookie(
            DEVICE_COOKIE,
            self.device_cookie(email),
            max_age=self._device_seconds,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    def tracked(self) -> tuple[int, int]:
        """How many accounts and addresses are tracked (each at most LOGIN_LIMIT_ENTRIES)."""
        return len(self._accounts), len(self._addresses)
