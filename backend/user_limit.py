"""The REST API's per-user limit, applied before routing.

A request over its user's allowance is refused here, before the rest of the middleware stack,
the router and the dependencies run: a tenant flooding the REST API then costs a token check
per call, not a whole request, and the other users' calls keep their share of the process.

Only a token that verifies is charged; anything else goes on to `get_current_user`, which says
what is wrong with it. The verified claims stay in the request's state, so the dependency
neither verifies the token again nor charges it twice.
"""

from __future__ import annotations

import jwt
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.errors import error_response
from backend.rate_limits import Buckets
from backend.sessions import SESSION_COOKIE
from shared.errors import TaskgateError
from shared.settings import Settings
from shared.tokens import TokenClaims, verify_token

VERIFIED = "verified_token"  # request.state key: (the token, its claims), already charged


def presented_token(headers: Headers) -> str | None:
    """The token `get_current_user` would read: the bearer header's, else the session cookie's."""
    authorization = headers.get("authorization")
    if authorization:
        # Split as FastAPI's HTTPBearer splits it, so both sides see the same token.
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and token else None
    cookie = headers.get("cookie")
    if not cookie:
        return None
    return cookie_parser(cookie).get(SESSION_COOKIE) or None


class UserLimit:
    def __init__(self, app: ASGIApp, settings: Settings, limits: Buckets) -> None:
        self.app = app
        self._settings = settings
        self._limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = presented_token(Headers(scope=scope))
        if token is not None:
            try:
                claims: TokenClaims | None = verify_token(self._settings, token)
            except jwt.InvalidTokenError:
                claims = None  # the dependency answers with the reason
            if claims is not None:
                try:
                    self._limits.take(claims.user_id)
                except TaskgateError as exc:
                    await error_response(exc)(scope, receive, send)
                    return
                scope.setdefault("state", {})[VERIFIED] = (token, claims)
        await self.app(scope, receive, send)
