"""Who is calling: bearer JWTs over HTTP, configured credentials over stdio, as httpx.Auth flows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass

import httpx
import jwt
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from shared.errors import ErrorCode, TaskgateError
from shared.settings import Settings
from shared.tokens import issue_token, verify_token


class JwtVerifier:
    """The MCP SDK's TokenVerifier: signature, expiry, issuer and audience, checked locally."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            claims = verify_token(self._settings, token)
        except jwt.InvalidTokenError:
            return None
        return AccessToken(
            token=token,
            client_id=f"user:{claims.user_id}",
            scopes=[],
            expires_at=claims.expires_at,
            subject=str(claims.user_id),
            claims={"iss": self._settings.jwt_issuer},
        )


class BearerAuth(httpx.Auth):
    """Passes one token on unchanged: the agent's own over HTTP."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


class LoginAuth(httpx.Auth):
    """Email and password from settings: logs in once, and again after a 401 (stdio mode)."""

    def __init__(self, email: str, password: str, token: str | None = None) -> None:
        self._email = email
        self._password = password
        self.token = token
        self._lock = asyncio.Lock()

    async def _login(self, http: httpx.AsyncClient) -> str:
        response = await http.post(
            "/api/v1/auth/token", data={"username": self._email, "password": self._password}
        )
        if response.status_code != 200:
            raise TaskgateError(
                ErrorCode.UNAUTHORIZED, "the gateway's configured credentials were refused"
            )
        token: str = response.json()["access_token"]
        return token

    async def ensure_token(self, http: httpx.AsyncClient, stale: str | None = None) -> str:
        async with self._lock:
            if self.token is None or self.token == stale:
                self.token = await self._login(http)
            return self.token

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = self.token
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            # The token expired or was revoked: log in again and retry this request once.
            self.token = None
            retry = await self._relogin()
            request.headers["Authorization"] = f"Bearer {retry}"
            yield request

    async def _relogin(self) -> str:
        # The flow has no client of its own; a short-lived one reaches the same backend.
        assert self._base_url is not None
        async with httpx.AsyncClient(base_url=self._base_url, timeout=10) as http:
            return await self.ensure_token(http)

    _base_url: str | None = None

    def bind(self, base_url: str) -> LoginAuth:
        self._base_url = base_url
        return self


@dataclass(frozen=True)
class Caller:
    user_id: int
    auth: httpx.Auth


class Identity:
    """Resolves the caller of a tool call, by transport and AUTH_MODE."""

    def __init__(self, settings: Settings, configured: Caller | None) -> None:
        self._settings = settings
        self._configured = configured

    def caller(self, user_id: int | None = None) -> Caller:
        if self._settings.auth_mode == "user_param":
            if user_id is None:
                raise TaskgateError(
                    ErrorCode.VALIDATION_ERROR, "user_id is required", {"field": "user_id"}
                )
            # Trusted mode: the gateway vouches for the user with a short-lived service token.
            token = issue_token(self._settings, user_id, ttl_seconds=60)
            return Caller(user_id=user_id, auth=BearerAuth(token))
        access = get_access_token()
        if access is not None and access.subject is not None:
            return Caller(user_id=int(access.subject), auth=BearerAuth(access.token))
        if self._configured is not None:
            return self._configured
        raise TaskgateError(ErrorCode.UNAUTHORIZED, "no credentials: send a bearer token")


async def configured_caller(settings: Settings, http: httpx.AsyncClient) -> Caller | None:
    """The stdio caller from GATEWAY_TOKEN, or GATEWAY_EMAIL and GATEWAY_PASSWORD."""
    if settings.gateway_token is not None:
        token = settings.gateway_token.get_secret_value()
        try:
            claims = verify_token(settings, token)
        except jwt.InvalidTokenError:
            raise TaskgateError(
                ErrorCode.UNAUTHORIZED, "GATEWAY_TOKEN is not a valid token"
            ) from None
        return Caller(user_id=claims.user_id, auth=BearerAuth(token))
    if settings.gateway_email and settings.gateway_password is not None:
        login = LoginAuth(settings.gateway_email, settings.gateway_password.get_secret_value())
        login.bind(settings.fastapi_base_url)
        token = await login.ensure_token(http)
        claims = verify_token(settings, token)
        return Caller(user_id=claims.user_id, auth=login)
    return None
