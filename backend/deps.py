"""Typed FastAPI dependencies: settings, a session on the primary, the current user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import ErrorCode, TaskgateError
from shared.models import User
from shared.settings import Settings
from shared.tokens import verify_token

SESSION_COOKIE = "taskgate_session"

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_current_user(
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
) -> User:
    token = bearer or request.cookies.get(SESSION_COOKIE)
    if not token:
        raise TaskgateError(ErrorCode.UNAUTHORIZED, "missing bearer token")
    try:
        claims = verify_token(settings, token)
    except jwt.ExpiredSignatureError:
        raise TaskgateError(ErrorCode.UNAUTHORIZED, "token has expired") from None
    except jwt.InvalidTokenError:
        raise TaskgateError(ErrorCode.UNAUTHORIZED, "token is not valid") from None
    user = await session.get(User, claims.user_id)
    if user is None:
        raise TaskgateError(ErrorCode.UNAUTHORIZED, "the token's user no longer exists")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
