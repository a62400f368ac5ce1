"""Who the caller is, and how the gateway calls the app as them, for an app spec's choices.

Identity: the caller's user id is a claim ("sub" by default) of the agent's bearer JWT, checked
with the secret the spec names (taskgate's own JwtVerifier when it names none). Calls to the app
carry one of: a token exchanged for the agent's (RFC 8693, taskgate's own backend); a short-lived
JWT signed with a secret the app already verifies; or a service session's cookie, with the
caller named in a header that the app trusts on that session only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator

import httpx
import jwt
from mcp.server.auth.provider import AccessToken

from shared.appspec import AppSpec, Identity, ServiceSession, SignedJwt, TokenExchange
from shared.user_ids import UserId, UserIds

# The agent's own tokens remembered as verified, each until it expires (as JwtVerifier does).
VERIFIED_TOKENS_MAX = 10_000

# Who the app is called as, for a caller's user id and their bearer token (None in trusted
# mode); None: the gateway's own default (token exchange, or trusted mode's service token).
AppAuthFor = Callable[[UserId, str | None], httpx.Auth]


class AppAuthInvalid(ValueError):
    """The spec's identity or backend auth cannot be set up (a secret missing); at start."""


def _secret(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise AppAuthInvalid(f"the app spec names the secret {name}, which is not set")
    return value


class ClaimVerifier:
    """The MCP SDK's TokenVerifier for an app's own HS256 tokens: the user id in one claim, of
    the kind the app's owner columns hold."""

    def __init__(self, identity: Identity, user_ids: UserIds) -> None:
        assert identity.secret_env is not None
        self._secret = _secret(identity.secret_env)
        self._claim = identity.claim
        self._user_ids = user_ids
        self._audience = identity.audience
        self._verified: dict[str, AccessToken] = {}

    async def verify_token(self, token: str) -> AccessToken | None:
        known = self._verified.get(token)
        if known is not None and known.expires_at is not None and known.expires_at > time.time():
            return known
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=self._audience,
                options={"require": ["exp"], "verify_aud": self._audience is not None},
            )
        except jwt.InvalidTokenError:
            return None
        user_id = self._user_ids.parse(claims.get(self._claim))
        if user_id is None:
            return None  # names no user of the app's kind
        access = AccessToken(
            token=token,
            client_id=f"user:{user_id}",
            scopes=[],
            expires_at=int(claims["exp"]),
            subject=str(user_id),
        )
        if len(self._verified) >= VERIFIED_TOKENS_MAX:
            self._verified.clear()
        self._verified[token] = access
        return access


class SignedJwtAuth(httpx.Auth):
    """A fresh short-lived token for one caller, signed with the app's own secret."""

    def __init__(self, option: SignedJwt, secret: str, user_id: UserId) -> None:
        self._option = option
        self._secret = secret
        self._user_id = user_id

    def __repr__(self) -> str:
        return "SignedJwtAuth(...)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        now = int(time.time())
        claims: dict[str, object] = {
            self._option.claim: str(self._user_id)
            if self._option.claim == "sub"
            else self._user_id,
            "iat": now,
            "exp": now + self._option.ttl_seconds,
        }
        if self._option.audience:
            claims["aud"] = self._option.audience
        if self._option.issuer:
            claims["iss"] = self._option.issuer
        request.headers["Authorization"] = "Bearer " + jwt.encode(claims, self._secret, "HS256")
        yield request


class ServiceSessionLogin:
    """The service account's session cookie: logged in on first use, and again on a 401."""

    def __init__(self, option: ServiceSession) -> None:
        self.option = option
        self._form = {
            "username": _secret(option.email_env),
            "password": _secret(option.password_env),
        }
        self.cookie: str | None = None

    def __repr__(self) -> str:  # the password never reaches a log through a repr
        return "ServiceSessionLogin(...)"

    def login_request(self, base: httpx.URL) -> httpx.Request:
        return httpx.Request("POST", base.join(self.option.login_path), data=self._form)

    def accept(self, response: httpx.Response) -> str | None:
        if response.status_code >= 400:
            return None
        cookies = [h for k, h in response.headers.multi_items() if k.lower() == "set-cookie"]
        if not cookies:
            return None
        self.cookie = "; ".join(c.split(";", 1)[0] for c in cookies)
        return self.cookie


class ServiceSessionAuth(httpx.Auth):
    requires_response_body = False

    def __init__(self, login: ServiceSessionLogin, user_id: UserId) -> None:
        self._login = login
        self._user_id = user_id

    def __repr__(self) -> str:
        return "ServiceSessionAuth(...)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        base = request.url.copy_with(path="/", query=None, fragment=None)
        sent_with = self._login.cookie
        if sent_with is None:
            sent_with = self._login.accept((yield self._login.login_request(base)))
        request.headers[self._login.option.user_header] = str(self._user_id)
        if sent_with is not None:
            request.headers["Cookie"] = sent_with
        response = yield request
        if response.status_code != 401:
            return
        # The session expired (or the app restarted): log in again, once.
        cookie = self._login.cookie
        if cookie is None or cookie == sent_with:
            cookie = self._login.accept((yield self._login.login_request(base)))
        if cookie is not None:
            request.headers["Cookie"] = cookie
            yield request


def token_verifier(spec: AppSpec, user_ids: UserIds) -> ClaimVerifier | None:
    """The verifier of the app's own tokens, or None: taskgate's JwtVerifier."""
    if spec.identity.secret_env is None:
        return None
    return ClaimVerifier(spec.identity, user_ids)


def app_auth_for(spec: AppSpec) -> AppAuthFor | None:
    """How each call to the app is authenticated, or None for token exchange (the default)."""
    option = spec.backend_auth
    if isinstance(option, TokenExchange):
        return None
    if isinstance(option, SignedJwt):
        secret = _secret(option.secret_env)
        return lambda user_id, _token: SignedJwtAuth(option, secret, user_id)
    login = ServiceSessionLogin(option)
    return lambda user_id, _token: ServiceSessionAuth(login, user_id)
