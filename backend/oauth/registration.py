"""Dynamic client registration (RFC 7591) within bounds: what one registration may hold, how
often one address may register, and how many clients may wait for their first login.

A registration costs a row on the primary (and every replica) before anyone has logged in, so
without bounds it is a way to fill the disk: 1,000 registrations of 60 KB took seconds. Here:

- the body is at most REGISTRATION_MAX_BYTES (backend.middleware.BodySizeLimit), the name at
  most CLIENT_NAME_MAX characters, at most REDIRECT_URIS_MAX redirect URIs, each URL at most
  URL_MAX characters;
- each client address may register OAUTH_REGISTRATION_BURST clients, then
  OAUTH_REGISTRATIONS_PER_HOUR;
- at most OAUTH_UNVERIFIED_CLIENTS_MAX clients that have never completed a login exist at once:
  past it the oldest that had their chance (PENDING_TTL_SECONDS, the time a login page is
  valid) make room, and when none has, registration answers `rate_limited`;
- `client_name` loses control, format (bidi, zero-width) and separator characters, so the login
  page shows the name as the bytes say.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta

from mcp.server.auth.provider import RegistrationError
from mcp.shared.auth import OAuthClientInformationFull
from sqlalchemy import delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.login_limits import client_address
from backend.rate_limits import Buckets
from shared.errors import TaskgateError, rate_limited
from shared.models import OAuthClient, OAuthCode, OAuthRefreshToken
from shared.settings import Settings

REGISTRATION_MAX_BYTES = 8 * 1024
CLIENT_NAME_MAX = 100
REDIRECT_URIS_MAX = 10
URL_MAX = 2048
# Unicode categories never shown: controls, format characters (bidi overrides, zero-width
# joiners), private use, surrogates, and line or paragraph separators.
_HIDDEN = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp"})
# How long a client may wait for its first login before a newer one may take its place.
UNVERIFIED_GRACE = timedelta(minutes=10)


def clean_display_text(text: str, limit: int = CLIENT_NAME_MAX) -> str:
    """`text` without hidden characters, its spaces collapsed, at most `limit` characters."""
    shown = "".join(c for c in text if unicodedata.category(c) not in _HIDDEN)
    return " ".join(shown.split())[:limit]


def check_registration(client: OAuthClientInformationFull) -> OAuthClientInformationFull:
    """The client as it will be stored, or RegistrationError for metadata over a bound."""
    uris = client.redirect_uris or []
    if len(uris) > REDIRECT_URIS_MAX:
        raise RegistrationError(
            "invalid_client_metadata", f"at most {REDIRECT_URIS_MAX} redirect URIs"
        )
    urls = [*uris, client.client_uri, client.logo_uri, client.tos_uri, client.policy_uri]
    if any(url is not None and len(str(url)) > URL_MAX for url in urls):
        raise RegistrationError("invalid_client_metadata", f"URLs are at most {URL_MAX} chars")
    name = clean_display_text(client.client_name) if client.client_name else None
    return client.model_copy(update={"client_name": name or None})


def _unverified() -> ColumnElement[bool]:
    """Clients that no login has completed for: no code was issued, no refresh token exists."""
    return ~exists().where(OAuthCode.client_id == OAuthClient.client_id) & ~exists().where(
        OAuthRefreshToken.client_id == OAuthClient.client_id
    )


async def is_verified(session: AsyncSession, client_id: str) -> bool:
    """Whether a person has logged in through this client at least once."""
    codes = select(exists().where(OAuthCode.client_id == client_id))
    tokens = select(exists().where(OAuthRefreshToken.client_id == client_id))
    return bool(await session.scalar(codes)) or bool(await session.scalar(tokens))


async def make_room_for_unverified(session: AsyncSession, limit: int) -> None:
    """Keep fewer than `limit` unverified clients: drop the oldest past their grace, or raise
    `rate_limited` when every one of them is still within it."""
    count = await session.scalar(select(func.count()).select_from(OAuthClient).where(_unverified()))
    over = (count or 0) - limit + 1
    if over <= 0:
        return
    cutoff = datetime.now(UTC) - UNVERIFIED_GRACE
    oldest = (
        select(OAuthClient.client_id)
        .where(_unverified(), OAuthClient.created_at < cutoff)
        .order_by(OAuthClient.created_at)
        .limit(over)
    )
    dropped = await session.execute(
        delete(OAuthClient)
        .where(OAuthClient.client_id.in_(oldest))
        .returning(OAuthClient.client_id)
    )
    if len(dropped.all()) < over:
        seconds = int(UNVERIFIED_GRACE.total_seconds())
        raise rate_limited("too many clients wait for their first login", seconds)


def registration_buckets(settings: Settings) -> Buckets:
    return Buckets(
        settings.oauth_registrations_per_hour / 3600,
        settings.oauth_registration_burst,
        settings.login_limit_entries,
        "client registrations from this address",
    )


class RegistrationThrottle:
    """In front of the SDK's registration handler: one token per registration and address."""

    def __init__(self, app: ASGIApp, buckets: Buckets) -> None:
        self.app = app
        self._buckets = buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            try:
                self._buckets.take(client_address(Request(scope)))
            except TaskgateError as refused:
                response = _refusal(refused)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _refusal(refused: TaskgateError) -> Response:
    seconds = refused.details["retry_after_seconds"]
    body = refused.envelope().model_dump(mode="json")
    return JSONResponse(body, status_code=429, headers={"Retry-After": str(seconds)})
