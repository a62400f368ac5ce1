"""What a command says, in one line naming the setting, when its settings cannot work.

A bad value, a malformed URL, a database it cannot reach or that refuses its password: each
ends the command with exit code 2 and one line on stderr, never a traceback. The servers check
the shape of their settings at start; whether a database answers, they report on `/readyz`,
because in compose and Kubernetes a database may come up after them.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from shared.settings import Settings

EXIT_SETTINGS = 2  # as argparse exits for a bad command line
DRIVER = "postgresql+asyncpg"
URL_SHAPE = "postgresql+asyncpg://user:password@host:5432/database"


class SettingError(Exception):
    """A setting that cannot work; the message starts with the setting's name."""


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and .env, or a SettingError naming each bad one."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as invalid:
        raise SettingError(_describe(invalid)) from None


def _describe(invalid: ValidationError) -> str:
    problems = []
    for error in invalid.errors(include_url=False):
        name = str(error["loc"][0]).upper() if error["loc"] else "settings"
        problems.append(f"{name}: {error['msg']}" if error["loc"] else error["msg"])
    return "; ".join(problems)


def check_database_url(name: str, url: str) -> None:
    """A URL the asyncpg engines can use, or a SettingError that shows the expected shape."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SettingError(f"{name}: not a database URL; expected {URL_SHAPE}") from None
    if parsed.drivername != DRIVER:
        raise SettingError(
            f"{name}: uses the driver {parsed.drivername!r}; taskgate needs asyncpg: {URL_SHAPE}"
        )
    if not parsed.host or not parsed.database:
        raise SettingError(f"{name}: names no host or no database; expected {URL_SHAPE}")


def check_database_urls(named: Iterable[tuple[str, str]]) -> None:
    for name, url in named:
        if url:
            check_database_url(name, url)


def check_http_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingError(f"{name}: {url!r} is not an http(s) URL, e.g. http://127.0.0.1:8001")


def database_failure(name: str, url: str, failure: BaseException) -> SettingError | None:
    """The one line for a database that cannot be reached or refuses us; None if not that."""
    cause = failure.orig if isinstance(failure, DBAPIError) else failure
    cause = getattr(cause, "__cause__", None) or cause
    parsed = make_url(url)
    where = f"{parsed.host}:{parsed.port or 5432}"
    kind = type(cause).__name__
    if kind in ("InvalidPasswordError", "InvalidAuthorizationSpecificationError"):
        return SettingError(f"{name}: {where} refused user {parsed.username!r} ({kind})")
    if kind == "InvalidCatalogNameError":
        return SettingError(f"{name}: {where} has no database {parsed.database!r}")
    if isinstance(cause, socket.gaierror):
        return SettingError(f"{name}: the host {parsed.host!r} is not known")
    if isinstance(cause, OSError | TimeoutError):
        return SettingError(f"{name}: cannot reach {where} ({kind}); is PostgreSQL running?")
    return None
