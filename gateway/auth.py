"""Credentials: the bearer verifier for HTTP callers, and the httpx.Auth flows to the backend.

An agent's token is issued for this gateway (aud = MCP_PUBLIC_URL) and never leaves it: calls to
the backend carry a short-lived backend token that the gateway gets for it by RFC 8693 token
exchange at the backend's /token, authenticated as the `taskgate-gateway` client."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Generator
from dataclasses import dataclass

import httpx
import jwt
from mcp.server.auth.provider import AccessToken

from shared.api import LOGIN_PATH, OAUTH_TOKEN_PATH
from shared.settings import Settings
from shared.tokens import (
    ACCESS_TOKEN_TYPE,
    GATEWAY_CLIENT_ID,
    TOKEN_EXCHANGE_GRANT,
    gateway_client_secret,
    verify_gateway_token,
)

# Backend tokens kept per agent token, each until shortly before it expires: a few hundred
# bytes each, so about 4 MB at the bound.
EXCHANGED_TOKENS_MAX = 10_000
EXCHANGE_MARGIN_SECONDS = 30
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
            claims = verify_gateway_token(self._settings, token)  # aud must be MCP_PUBLIC_URL
        except jwt.InvalidTokenError:
            return None
        access = AccessToken(
            token=token,
            client_id=f"user:{claims.user_id}",
            scopes=[],
            expires_at=claims.expires_at,
            resource=self._settings.mcp_url,
            subject=str(claims.user_id),
            claims={"iss": self._settings.jwt_issuer},
        )
        self._verified[token] = access
        if len(self._verified) > VERIFIED_TOKENS_MAX:
            self._verified.popitem(last=False)
        return access


class BearerAuth(httpx.Auth):
    """Sends one backend token unchanged: a trusted-mode service token."""

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

    def login_request(self) -> httpx.Request:
        return httpx.Request("POST", self._login_url, data=self._form)

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
            sent_with = yield from self._log_in()
        request.headers["Authorization"] = f"Bearer {sent_with}"
        response = yield request
        if response.status_code != 401:
            return
        # Expired or revoked: log in again (unless a concurrent call already did) and resend once.
        token = self.token
        if token is None or token == sent_with:
            token = yield from self._log_in()
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def _log_in(self) -> Generator[httpx.Request, httpx.Response, str]:
        response = yield self.login_request()
        return self.accept_login(response)


class ExchangeRefused(Exception):
    """The backend's /token did not exchange the agent's token for a backend token."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"token exchange answered {response.status_code}")
        self.response = response


@dataclass(frozen=True)
class _Exchanged:
    token: str
    refresh_after: float  # monotonic


class TokenExchanger:
    """Swaps gateway tokens for backend tokens (RFC 8693) and remembers them, bounded in items."""

    def __init__(self, settings: Settings) -> None:
        self._url = settings.fastapi_base_url.rstrip("/") + OAUTH_TOKEN_PATH
        self._audience = settings.jwt_audience
        self._basic = httpx.BasicAuth(GATEWAY_CLIENT_ID, gateway_client_secret(settings))
        self._cache: OrderedDict[str, _Exchanged] = OrderedDict()

    def __repr__(self) -> str:  # the client secret never reaches a log through a repr
        return "TokenExchanger(...)"

    def cached(self, subject_token: str) -> str | None:
        hit = self._cache.get(subject_token)
        if hit is None:
            return None
        if hit.refresh_after <= time.monotonic():
            del self._cache[subject_token]
            return None
        self._cache.move_to_end(subject_token)
        return hit.token

    def forget(self, subject_token: str) -> None:
        self._cache.pop(subject_token, None)

    def exchange_request(self, subject_token: str) -> httpx.Request:
        form = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "client_id": GATEWAY_CLIENT_ID,
            "subject_token": subject_token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": self._audience,
        }
        request = httpx.Request("POST", self._url, data=form)
        return next(self._basic.auth_flow(request))

    def accept(self, subject_token: str, response: httpx.Response) -> str:
        """Keep the backend token from an exchange response, or raise ExchangeRefused."""
        if response.status_code != 200:
            raise ExchangeRefused(response)
        try:
            body = response.json()
            token, expires_in = body["access_token"], int(body["expires_in"])
        except (ValueError, KeyError, TypeError):
            raise ExchangeRefused(response) from None
        if not isinstance(token, str) or not token:
            raise ExchangeRefused(response)
        margin = min(EXCHANGE_MARGIN_SECONDS, expires_in / 4)
        self._cache[subject_token] = _Exchanged(token, time.monotonic() + expires_in - margin)
        self._cache.move_to_end(subject_token)
        while len(self._cache) > EXCHANGED_TOKENS_MAX:
            self._cache.popitem(last=False)
        return token


class ExchangeAuth(httpx.Auth):
    """Calls the backend as the agent with a backend token exchanged for the agent's gateway
    token; the exchange request is yielded from the flow, so the pooled client sends it."""

    requires_response_body = True  # the exchange response's body carries the token

    def __init__(self, exchanger: TokenExchanger, subject_token: str) -> None:
        self._exchanger = exchanger
        self._subject = subject_token

    def __repr__(self) -> str:
        return "ExchangeAuth(...)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._exchanger.cached(self._subject)
        fresh = token is None
        if token is None:
            token = yield from self._exchange()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401 or fresh:
            return
        # The cached token stopped working (a restarted backend with a new secret): once more.
        self._exchanger.forget(self._subject)
        token = yield from self._exchange()
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def _exchange(self) -> Generator[httpx.Request, httpx.Response, str]:
        response = yield self._exchanger.exchange_request(self._subject)
        return self._exchanger.accept(self._subject, response)
