"""The OAuth authorization server's storage and rules, behind the MCP SDK's provider protocol.

The SDK's handlers parse and check requests (PKCE S256, redirect URIs, client authentication);
this provider stores clients, codes and refresh tokens in PostgreSQL (codes and refresh tokens as
SHA-256 hashes only), picks each token's one audience, rotates refresh tokens, and revokes a
family when a code or a rotated refresh token is used a second time.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    OAuthAuthorizationServerProvider,
    RefreshToken,
    RegistrationError,
    TokenError,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyUrl, BaseModel
from pydantic_core import PydanticCustomError
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import State

from backend.oauth.clients import TaskgateClient, check_redirect_uris, gateway_client
from backend.oauth.registration import check_registration, make_room_for_unverified
from shared.models import OAuthClient, OAuthCode, OAuthRefreshToken
from shared.schemas import storable
from shared.settings import Settings
from shared.tokens import ALGORITHM, GATEWAY_CLIENT_ID, issue_token

LOGIN_PATH = "/oauth/login"
PENDING_AUDIENCE = "taskgate-oauth-pending"
PENDING_TTL_SECONDS = 600  # time a person has to fill in the login form
# How long an expired or used code stays, so a replay is recognised and revokes its tokens.
USED_CODE_KEEP = timedelta(minutes=10)
_CLIENT_ID = re.compile(r"[0-9a-f-]{36}")

# The `resource` of the /token request being handled: the SDK's handler does not pass it on.
requested_resource: ContextVar[str | None] = ContextVar("taskgate_requested_resource", default=None)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class PendingAuthorization(BaseModel):
    """An /authorize request that waits for the person to log in; carried signed in the page."""

    client_id: str
    redirect_uri: str
    redirect_uri_explicit: bool
    code_challenge: str
    state: str | None
    scopes: list[str]
    resource: str


class TaskgateOAuthProvider(
    OAuthAuthorizationServerProvider[AuthorizationCode, RefreshToken, AccessToken]
):
    """OAuthAuthorizationServerProvider for taskgate's own users."""

    def __init__(self, settings: Settings, state: State) -> None:
        self._settings = settings
        self._state = state  # the app's state; its `sessions` exists once the lifespan runs

    @property
    def _sessions(self) -> async_sessionmaker[AsyncSession]:
        sessions: async_sessionmaker[AsyncSession] = self._state.sessions
        return sessions

    # Audiences.

    def audience_for(self, resource: str | None) -> str | None:
        """The `aud` for an RFC 8707 resource: a gateway's URL, or this backend (its URL or the
        JWT_AUDIENCE name). None for a resource this server does not issue tokens for."""
        if resource is None:
            return self._settings.mcp_url  # MCP clients are who use /authorize (the first gateway)
        wanted = resource.rstrip("/")
        for gateway in self._settings.gateway_audiences:
            if wanted == gateway.rstrip("/"):
                return gateway
        if wanted in (self._settings.backend_url, self._settings.jwt_audience):
            return self._settings.jwt_audience
        return None

    def _access_token(self, user_id: int, audience: str, client_id: str) -> tuple[str, int]:
        ttl = self._settings.jwt_ttl_seconds
        token = issue_token(self._settings, user_id, ttl, audience=audience, client_id=client_id)
        return token, ttl

    # Clients.

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        if client_id == GATEWAY_CLIENT_ID:
            return gateway_client(self._settings)
        if not _CLIENT_ID.fullmatch(client_id):
            return None  # not one we issued: no need to ask the database
        async with self._sessions() as session:
            row = await session.get(OAuthClient, client_id)
        return TaskgateClient.model_validate(row.info) if row is not None else None

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        check_redirect_uris(client_info)
        client_info = check_registration(client_info)
        info = client_info.model_dump(mode="json", exclude_none=True)
        text = json.dumps(info, ensure_ascii=False)  # escapes NUL as \u0000, which JSONB refuses
        try:  # JSONB takes neither NUL nor a lone surrogate: refuse them instead of failing
            storable(text.replace("\\u0000", "\x00"))
        except PydanticCustomError:
            raise RegistrationError(
                "invalid_client_metadata", "metadata must be valid Unicode text without NUL"
            ) from None
        async with self._sessions() as session:
            await make_room_for_unverified(session, self._settings.oauth_unverified_clients_max)
            session.add(OAuthClient(client_id=client_info.client_id, info=info))
            await session.commit()

    # /authorize: the SDK has checked the client, redirect URI and PKCE; the person logs in next.

    async def authorize(
        self, client: OAuthClientInformationFull, params: AuthorizationParams
    ) -> str:
        audience = self.audience_for(params.resource)
        if audience is None:
            raise AuthorizeError("invalid_target", "this server issues no tokens for that resource")
        pending = PendingAuthorization(
            client_id=client.client_id or "",
            redirect_uri=str(params.redirect_uri),
            redirect_uri_explicit=params.redirect_uri_provided_explicitly,
            code_challenge=params.code_challenge,
            state=params.state,
            scopes=params.scopes or [],
            resource=params.resource or self._settings.mcp_url,
        )
        return (
            f"{self._settings.backend_url}{LOGIN_PATH}?{urlencode({'request': self.sign(pending)})}"
        )

    def sign(self, pending: PendingAuthorization) -> str:
        claims: dict[str, Any] = {
            "aud": PENDING_AUDIENCE,
            "exp": int(time.time()) + PENDING_TTL_SECONDS,
            "req": pending.model_dump(),
        }
        return jwt.encode(claims, self._settings.jwt_secret.get_secret_value(), ALGORITHM)

    def unsign(self, token: str) -> PendingAuthorization | None:
        try:
            claims = jwt.decode(
                token,
                self._settings.jwt_secret.get_secret_value(),
                algorithms=[ALGORITHM],
                audience=PENDING_AUDIENCE,
            )
            return PendingAuthorization.model_validate(claims["req"])
        except (jwt.InvalidTokenError, KeyError, ValueError):
            return None

    async def issue_code(self, pending: PendingAuthorization, user_id: int) -> str:
        """After the person logged in: a code for the client, stored as its hash."""
        code = secrets.token_urlsafe(32)
        async with self._sessions() as session:
            await session.execute(
                delete(OAuthCode).where(OAuthCode.expires_at < _now() - USED_CODE_KEEP)
            )
            session.add(
                OAuthCode(
                    code_hash=digest(code),
                    client_id=pending.client_id,
                    user_id=user_id,
                    redirect_uri=pending.redirect_uri,
                    redirect_uri_explicit=pending.redirect_uri_explicit,
                    code_challenge=pending.code_challenge,
                    resource=pending.resource,
                    scopes=" ".join(pending.scopes),
                    expires_at=_now() + timedelta(seconds=self._settings.oauth_code_ttl_seconds),
                )
            )
            await session.commit()
        return code

    # /token, authorization_code grant.

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> AuthorizationCode | None:
        async with self._sessions() as session:
            row = await session.get(OAuthCode, digest(authorization_code))
            if row is None or row.client_id != client.client_id:
                return None
            if row.family_id is not None:  # a replay: what the first use got is revoked
                await _revoke_family(session, row.family_id)
                await session.commit()
                return None
        return AuthorizationCode(
            code=authorization_code,
            scopes=row.scopes.split(),
            expires_at=row.expires_at.timestamp(),
            client_id=row.client_id,
            code_challenge=row.code_challenge,
            redirect_uri=AnyUrl(row.redirect_uri),
            redirect_uri_provided_explicitly=row.redirect_uri_explicit,
            resource=row.resource,
            subject=str(row.user_id),
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        audience = self._checked_audience(authorization_code.resource)
        family = uuid.uuid4().hex
        async with self._sessions() as session:
            # Single use, even under a race: only one exchange finds the code unused.
            user_id = await session.scalar(
                update(OAuthCode)
                .where(
                    OAuthCode.code_hash == digest(authorization_code.code),
                    OAuthCode.family_id.is_(None),
                    OAuthCode.expires_at > _now(),
                )
                .values(family_id=family)
                .returning(OAuthCode.user_id)
            )
            if user_id is None:
                raise TokenError("invalid_grant", "authorization code is not valid")
            refresh = self._new_refresh_token(
                session,
                family,
                client,
                user_id,
                authorization_code.resource or self._settings.mcp_url,
                authorization_code.scopes,
            )
            await session.commit()
        return self._tokens(user_id, audience, client, refresh, authorization_code.scopes)

    # /token, refresh_token grant.

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> RefreshToken | None:
        async with self._sessions() as session:
            row = await session.get(OAuthRefreshToken, digest(refresh_token))
            if row is None or row.client_id != client.client_id or row.revoked_at is not None:
                return None
            if row.rotated_at is not None:  # reuse of a rotated token: someone holds a copy
                await _revoke_family(session, row.family_id)
                await session.commit()
                return None
        return RefreshToken(
            token=refresh_token,
            client_id=row.client_id,
            scopes=row.scopes.split(),
            expires_at=int(row.expires_at.timestamp()),
            resource=row.resource,
            subject=str(row.user_id),
        )

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        audience = self._checked_audience(refresh_token.resource)
        async with self._sessions() as session:
            rotated = (
                await session.execute(
                    update(OAuthRefreshToken)
                    .where(
                        OAuthRefreshToken.token_hash == digest(refresh_token.token),
                        OAuthRefreshToken.rotated_at.is_(None),
                        OAuthRefreshToken.revoked_at.is_(None),
                    )
                    .values(rotated_at=_now())
                    .returning(OAuthRefreshToken.family_id, OAuthRefreshToken.user_id)
                )
            ).one_or_none()
            if rotated is None:  # a concurrent use rotated it first: treat as reuse
                family = await session.scalar(
                    select(OAuthRefreshToken.family_id).where(
                        OAuthRefreshToken.token_hash == digest(refresh_token.token)
                    )
                )
                if family is not None:
                    await _revoke_family(session, family)
                await session.commit()
                raise TokenError("invalid_grant", "refresh token is not valid")
            family, user_id = rotated
            refresh = self._new_refresh_token(
                session, family, client, user_id, refresh_token.resource or "", scopes
            )
            await session.commit()
        return self._tokens(user_id, audience, client, refresh, scopes)

    def _checked_audience(self, granted_resource: str | None) -> str:
        """The grant's audience; a /token `resource` must name the same resource (RFC 8707)."""
        asked = requested_resource.get()
        audience = self.audience_for(granted_resource)
        if audience is None or (asked is not None and self.audience_for(asked) != audience):
            raise TokenError("invalid_target", "resource does not match the authorization")
        return audience

    def _new_refresh_token(
        self,
        session: AsyncSession,
        family: str,
        client: OAuthClientInformationFull,
        user_id: int,
        resource: str,
        scopes: list[str],
    ) -> str:
        token = secrets.token_urlsafe(32)
        session.add(
            OAuthRefreshToken(
                token_hash=digest(token),
                family_id=family,
                client_id=client.client_id,
                user_id=user_id,
                resource=resource,
                scopes=" ".join(scopes),
                expires_at=_now() + timedelta(seconds=self._settings.oauth_refresh_ttl_seconds),
            )
        )
        return token

    def _tokens(
        self,
        user_id: int,
        audience: str,
        client: OAuthClientInformationFull,
        refresh: str,
        scopes: list[str],
    ) -> OAuthToken:
        access, ttl = self._access_token(user_id, audience, client.client_id or "")
        return OAuthToken(
            access_token=access,
            expires_in=ttl,
            refresh_token=refresh,
            scope=" ".join(scopes) or None,
        )

    # Unused by taskgate: tokens are JWTs verified where they are used, and /revoke is off.

    async def load_access_token(self, token: str) -> AccessToken | None:
        return None

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        return None


async def _revoke_family(session: AsyncSession, family: str) -> None:
    await session.execute(
        update(OAuthRefreshToken)
        .where(OAuthRefreshToken.family_id == family, OAuthRefreshToken.revoked_at.is_(None))
        .values(revoked_at=_now())
    )
