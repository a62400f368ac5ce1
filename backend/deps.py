"""Typed FastAPI dependencies: settings, a session on the primary, the current user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from backend.login_limits import LoginLimits
from backend.rate_limits import Buckets
from backend.security import PasswordHashing
from backend.sessions import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, csrf_token_matches
from backend.user_limit import VERIFIED
from shared.api import LOGIN_PATH
from shared.errors import ErrorCode, TaskgateError
from shared.models import User
from shared.settings import Settings
from shared.tokens import TokenClaims, verify_token

# Both are declared so the OpenAPI schema lists them as alternatives; the header wins.
bearer_scheme = HTTPBearer(
    bearerFormat="JWT",
    description=f"The access_token from POST {LOGIN_PATH}.",
    auto_error=False,
)
cookie_scheme = APIKeyCookie(
    name=SESSION_COOKIE,
    description=f"Set by POST {LOGIN_PATH}. Writes also need the {CSRF_HEADER} header.",
    auto_error=False,
)


# async: FastAPI runs a plain `def` dependency in its thread pool, a worker-thread round trip
# per request for a dictionary look-up.
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


async def get_hashing(request: Request) -> PasswordHashing:
    hashing: PasswordHashing = request.app.state.hashing
    return hashing


async def get_login_limits(request: Request) -> LoginLimits:
    limits: LoginLimits = request.app.state.login_limits
    return limits


async def get_signup_limits(request: Request) -> Buckets:
    limits: Buckets = request.app.state.signup_limits
    return limits


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
HashingDep = Annotated[PasswordHashing, Depends(get_hashing)]
LoginLimitsDep = Annotated[LoginLimits, Depends(get_login_limits)]
SignupLimitsDep = Annotated[Buckets, Depends(get_signup_limits)]


def _token_from(
    request: Request,
    settings: Settings,
    bearer: HTTPAuthorizationCredentials | None,
    cookie: str | None,
) -> str:
    if request.headers.get("Authorization"):
        if bearer is None:
            raise TaskgateError(
                ErrorCode.UNAUTHORIZED, "the Authorization header must be 'Bearer <token>'"
            )
        return bearer.credentials
    if cookie:
        if request.method not in SAFE_METHODS and not csrf_token_matches(
            settings, cookie, request.headers.get(CSRF_HEADER)
        ):
            raise TaskgateError(
                ErrorCode.FORBIDDEN,
                f"a write authenticated by the session cookie needs the {CSRF_HEADER} header",
                {"header": CSRF_HEADER},
            )
        return cookie
    raise TaskgateError(ErrorCode.UNAUTHORIZED, "missing bearer token or session cookie")


def _verified(settings: Settings, token: str) -> TokenClaims:
    try:
        return verify_token(settings, token)
    except jwt.ExpiredSignatureError:
        raise TaskgateError(ErrorCode.UNAUTHORIZED, "token has expired") from None
    except jwt.InvalidAudienceError:
        # One audience per token: a token for the MCP gateway is no good here (and vice versa).
        raise TaskgateError(
            ErrorCode.UNAUTHORIZED,
            "token was issued for another audience; the REST API takes backend tokens "
            f"from POST {LOGIN_PATH} without `resource`",
        ) from None
    except jwt.InvalidTokenError:
        raise TaskgateError(ErrorCode.UNAUTHORIZED, "token is not valid") from None


async def get_current_user(
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    cookie: Annotated[str | None, Depends(cookie_scheme)],
) -> User:
    token = _token_from(request, settings, bearer, cookie)
    verified: tuple[str, TokenClaims] | None = getattr(request.state, VERIFIED, None)
    if verified is not None and verified[0] == token:
        claims = verified[1]  # verified and charged by UserLimit, before routing
    else:
        claims = _verified(settings, token)
        user_limits: Buckets = request.app.state.user_limits
        user_limits.take(claims.user_id)
    user = await session.get(User, claims.user_id)
    if user is None:
        raise TaskgateError(ErrorCode.UNAUTHORIZED, "the token's user no longer exists")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
