from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Response

from backend.deps import SESSION_COOKIE, SessionDep, SettingsDep
from backend.services import users
from shared.schemas import TokenOut
from shared.tokens import issue_token

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/token", response_model=TokenOut)
async def login(
    username: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=128)],
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> TokenOut:
    """OAuth2 password login (`username` is the email). Also sets a session cookie for browsers."""
    user = await users.authenticate(session, username, password)
    token = issue_token(settings, user.id)
    response.set_cookie(
        SESSION_COOKIE, token, max_age=settings.jwt_ttl_seconds, httponly=True, samesite="strict"
    )
    return TokenOut(access_token=token, expires_in=settings.jwt_ttl_seconds)
