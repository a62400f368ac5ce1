from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response, status

from backend.deps import HashingDep, LoginLimitsDep, SessionDep, SettingsDep
from backend.login_limits import DEVICE_COOKIE, login_client
from backend.openapi import COMMON_ERRORS, error_responses
from backend.services import users
from backend.sessions import CSRF_COOKIE, SESSION_COOKIE, clear_session_cookies, set_session_cookies
from shared.errors import ErrorCode, TaskgateError
from shared.rules import EMAIL_MAX, PASSWORD_MAX
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
                    f"both SameSite=Strict; and `{DEVICE_COOKIE}` (HttpOnly), which lets this "
                    "client log in while its address or account backs off.",
                    "schema": {"type": "string"},
                }
            },
        },
        **error_responses(401, 429),
    },
)
async def login(
    username: Annotated[str, Form(min_length=1, max_length=EMAIL_MAX, description="The email.")],
    password: Annotated[str, Form(min_length=1, max_length=PASSWORD_MAX)],
    resource: Annotated[
        str | None,
        Form(
            max_length=2048,
            description="RFC 8707: the gateway's MCP URL for a token that the gateway accepts; "
            "leave out for a token for this REST API.",
        ),
    ] = None,
    *,
    session: SessionDep,
    settings: SettingsDep,
    hashing: HashingDep,
    limits: LoginLimitsDep,
    request: Request,
    response: Response,
) -> TokenOut:
    """OAuth2 password login (`username` is the email). Without `resource`: a token for this REST
    API, and browsers also get a session cookie. With `resource` = the gateway's MCP URL: a
    token for MCP, which this API refuses (one audience per token).

    Failed logins back off per account and per client address: `429 rate_limited` with
    `Retry-After` and `details.retry_after_seconds`. A client that sends back the device cookie
    of an earlier login is judged by its own failures alone.
    """
    audience = request.app.state.oauth_provider.audience_for(resource)
    if resource is None:
        audience = settings.jwt_audience
    elif audience is None:
        raise TaskgateError(
            ErrorCode.BAD_REQUEST,
            "resource names no service of this deployment",
            {"field": "resource", "expected": [*settings.gateway_audiences, settings.backend_url]},
        )
    user = await limits.attempt(
        username,
        login_client(request),
        lambda: users.authenticate(session, hashing, username, password),
    )
    token = issue_token(settings, user.id, audience=audience)
    if audience == settings.jwt_audience:
        set_session_cookies(response, request, settings, token)
    limits.remember_device(response, request, username)
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
