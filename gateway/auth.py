"""Credentials: the bearer verifier for HTTP callers, and the httpx.Auth flows to the backend."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Generator

import httpx
import jwt
from mcp.server.auth.provider import AccessToken

from gateway.request_id import HEADER as REQUEST_ID_HEADER
from shared.settings import Settings
from shared.tokens import verify_token

LOGIN_PATH = "/api/v1/auth/token"
# Tokens remembered as verified. An agent sends the same token on every call, and verifying it
# (HMAC and claim checks) was about 12% of the gateway's CPU per call in the benchmark's profile.
VERIFIED_TOKENS_MAX = 10_000


class JwtVerifier:
    """The MCP SDK's TokenVerifier: signature, expiry, issuer and audience, checked locally."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # Only tokens that passed are kept, and only until they expire: what verification checks
        # (signature, issuer, audience) cannot change for a given token string, expiry aside.
        self._verified: OrderedDict[str, AccessToken] = OrderedDict()

    async def verify_token(self, token: str) -> AccessToken | None:
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at is not None and known.expires_at > time.time():
                return known
            del self._verified[token]
        try:
            claims = verify_token(self._settings, token)
        except jwt.InvalidTokenError:
            return None
        access = AccessToken(
            token=token,
            client_id=f"user:{claims.user_id}",
            scopes=[],
            expires_at=claims.expires_at,
            subject=str(claims.user_id),
            claims={"iss": self._settings.jwt_issuer},
        )
        self._verified[token] = access
        if len(self._verified) > VERIFIED_TOKENS_MAX:
            self._verified.popitem(last=False)
        return access


class BearerAuth(httpx.Auth):
    """Sends one token unchanged: the agent's own (HTTP), GATEWAY_TOKEN, or a service token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


class LoginRefused(Exception):
    """The backend did not hand out a token for the configured email and password."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"login answered {response.status_code}")
        self.response = response


class LoginAuth(httpx.Auth):
    """GATEWAY_EMAIL and GATEWAY_PASSWORD (stdio): log in when there is no token, and again on 401.

    The flow yields the login request itself, so the pooled client sends it and no second client
    is needed. Concurrent calls that meet an expired token may each log in once; that costs a
    login, never a wrong answer.
    """

    requires_response_body = True  # the login response's body carries the token

    def __init__(self, base_url: str, email: str, password: str) -> None:
        self._login_url = base_url.rstrip("/") + LOGIN_PATH
        self._form = {"username": email, "password": password}
        self.token: str | None = None

    def __repr__(self) -> str:  # the password never reaches a log through a repr
        return "LoginAuth(...)"

    def login_request(self, request_id: str | None = None) -> httpx.Request:
        headers = {REQUEST_ID_HEADER: request_id} if request_id else None
        return httpx.Request("POST", self._login_url, data=self._form, headers=headers)

    def accept_login(self, response: httpx.Response) -> str:
        """Keep the token from a login response, or raise LoginRefused."""
        if response.status_code != 200:
            raise LoginRefused(response)
        try:
            token = response.json()["access_token"]
        except (ValueError, KeyError, TypeError):
            raise LoginRefused(response) from None
        if not isinstance(token, str) or not token:
            raise LoginRefused(response)
        self.token = token
        return token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sent_with = self.token
        if sent_with is None:
            sent_with = yield from self._log_in(request)
        request.headers["Authorization"] = f"Bearer {sent_with}"
        response = yield request
        if response.status_code != 401:
            return
        # Expired or revoked: log in again (unless a concurrent call already did) and resend once.
        token = self.token
        if token is None or token == sent_with:
            token = yield from self._log_in(request)
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def _log_in(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, str]:
        response = yield self.login_request(request.headers.get(REQUEST_ID_HEADER))
        return self.accept_login(response)
