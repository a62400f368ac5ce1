from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response, status

from backend.deps import HashingDep, LoginLimitsDep, SessionDep, SettingsDep
from backend.login_limits import client_address
from backend.openapi import COMMON_ERRORS, error_responses
from backend.services import users
from backend.sessions import CSRF_COOKIE, SESSION_COOKIE, clear_session_cookies, set_session_cookies
from shared.schemas import TokenOut
from shared.tokens import issue_token

router = APIRouter(prefix="/auth", tags=["auth"], responses=error_responses(*COMMON_ERRORS))


@router.post(
    "/token",
    response_model=TokenOut,
    responses={
        200: {
            "description": "The bearer token. Also sets the session and CSRF cookies.",
            "headers": {
                "Set-Cookie": {
                    "description": f"`{SESSION_COOKIE}` (HttpOnly) and `{CSRF_COOKIE}`, "
                    "both SameSite=Strict.",
                    "schema": {"type": "string"},
                }
            },
        },
        **error_responses(401, 429),
    },
)
async def login(
    username: Annotated[str, Form(min_length=1, max_length=320, description="The email.")],
    password: Annotated[str, Form(min_length=1, max_length=128)],
    session: SessionDep,
    settings: SettingsDep,
    hashing: HashingDep,
    limits: LoginLimitsDep,
    request: Request,
    response: Response,
) -> TokenOut:
    """OAuth2 password login (`username` is the email). Browsers also get a session cookie.

    Failed logins back off per account and per client address: `429 rate_limited` with
    `Retry-After` and `details.retry_after_seconds`.
    """
    address = client_address(request)
    limits.begin(username, address)
    user = await users.authenticate(session, hashing, username, password)
    limits.succeeded(username, address)
    token = issue_token(settings, user.id)
    set_session_cookies(response, request, settings, token)
    return TokenOut(access_token=token, expires_in=settings.jwt_ttl_seconds)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={204: {"description": "The session cookies are cleared."}},
)
async def logout() -> Response:
    """Clear the session cookies. Bearer tokens stay valid until they expire."""
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookies(response)
    return response
