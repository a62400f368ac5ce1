"""The login and sign-up pages that /authorize sends a person to.

Each form carries the signed pending authorization and a CSRF token: an HMAC of a random value
kept in an HttpOnly, SameSite=Strict cookie, so another site can neither post the form for the
person (login CSRF) nor read the token. The page names the client and where it will send the
person back, so a look-alike client is visible before the password is typed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from html import escape
from typing import Annotated
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from mcp.server.auth.provider import construct_redirect_uri
from pydantic import ValidationError

from backend.deps import HashingDep, LoginLimitsDep, SessionDep, SettingsDep, SignupLimitsDep
from backend.login_limits import client_address, login_client
from backend.oauth.provider import LOGIN_PATH, PendingAuthorization, TaskgateOAuthProvider
from backend.oauth.registration import clean_display_text
from backend.services import users
from shared.errors import ErrorCode, TaskgateError
from shared.rules import EMAIL_MAX, PASSWORD_MAX, PASSWORD_MIN
from shared.schemas import UserCreate
from shared.settings import Settings

SIGNUP_PATH = "/oauth/signup"
CSRF_COOKIE = "taskgate_oauth_csrf"
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",  # no clickjacking of the login form
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)

RequestArg = Annotated[str, Query(alias="request", min_length=1, max_length=8192)]
RequestField = Annotated[str, Form(alias="request", min_length=1, max_length=8192)]
CsrfField = Annotated[str, Form(min_length=1, max_length=128)]
EmailField = Annotated[str, Form(min_length=1, max_length=EMAIL_MAX)]
PasswordField = Annotated[str, Form(min_length=1, max_length=PASSWORD_MAX)]


def _provider(request: Request) -> TaskgateOAuthProvider:
    provider: TaskgateOAuthProvider = request.app.state.oauth_provider
    return provider


def _pending(request: Request, signed: str) -> PendingAuthorization:
    pending = _provider(request).unsign(signed)
    if pending is None:
        raise TaskgateError(
            ErrorCode.BAD_REQUEST,
            "this login link has expired or is not valid; start again from your MCP client",
        )
    return pending


def plain_origin(url: str) -> str:
    """Where a redirect goes, as scheme://host[:port] with the host in ASCII (punycode), so a
    look-alike of another site's name shows as what it is."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        host = host.encode("ascii", "backslashreplace").decode("ascii")
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _csrf_for(settings: Settings, nonce: str) -> str:
    key = settings.jwt_secret.get_secret_value().encode()
    return hmac.new(key, b"oauth-csrf:" + nonce.encode(), hashlib.sha256).hexdigest()


def _check_csrf(request: Request, settings: Settings, sent: str) -> None:
    nonce = request.cookies.get(CSRF_COOKIE)
    if not nonce or not hmac.compare_digest(
        _csrf_for(settings, nonce).encode(), sent.encode("utf-8")
    ):
        raise TaskgateError(
            ErrorCode.FORBIDDEN,
            "the form's CSRF token does not match; reload the page and try again",
        )


def _page(
    request: Request,
    settings: Settings,
    title: str,
    body: str,
    status: int = 200,
) -> HTMLResponse:
    nonce = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)} · taskgate</title>"
        "<style>body{font-family:sans-serif;max-width:26em;margin:3em auto}"
        "label,input,button{display:block;width:100%;margin:.4em 0}</style></head><body>"
        f"<h1>{escape(title)}</h1>{body.replace('{csrf}', _csrf_for(settings, nonce))}"
        "</body></html>"
    )
    response = HTMLResponse(html, status_code=status, headers=_HEADERS)
    response.set_cookie(
        CSRF_COOKIE,
        nonce,
        max_age=3600,
        path="/oauth",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


def _form(action: str, signed: str, button: str, message: str | None) -> str:
    error = f'<p role="alert" style="color:#b00">{escape(message)}</p>' if message else ""
    return (
        f'{error}<form method="post" action="{action}">'
        f'<input type="hidden" name="request" value="{escape(signed)}">'
        '<input type="hidden" name="csrf" value="{csrf}">'
        '<label>Email <input type="email" name="email" autocomplete="username" required></label>'
        '<label>Password <input type="password" name="password" '
        'autocomplete="current-password" required></label>'
        f'<button type="submit">{escape(button)}</button></form>'
    )


async def _login_page(
    request: Request, settings: Settings, signed: str, message: str | None = None, status: int = 200
) -> HTMLResponse:
    pending = _pending(request, signed)
    client = await _provider(request).get_client(pending.client_id)
    name = clean_display_text((client.client_name if client else None) or "")
    signup = f"{SIGNUP_PATH}?{urlencode({'request': signed})}"
    intro = (
        f"<p><b>{escape(name or pending.client_id)}</b> asks to use taskgate as you. After you "
        f"log in, you go back to <b>{escape(plain_origin(pending.redirect_uri))}</b>.</p>"
    )
    after = f'<p>No account? <a href="{escape(signup)}">Sign up</a></p>'
    return _page(
        request,
        settings,
        "Log in",
        intro + _form(LOGIN_PATH, signed, "Log in", message) + after,
        status,
    )


@router.get(LOGIN_PATH, response_class=HTMLResponse)
async def login_page(request: Request, settings: SettingsDep, signed: RequestArg) -> HTMLResponse:
    return await _login_page(request, settings, signed)


@router.post(LOGIN_PATH, response_model=None)
async def log_in(
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    hashing: HashingDep,
    limits: LoginLimitsDep,
    signed: RequestField,
    csrf: CsrfField,
    email: EmailField,
    password: PasswordField,
) -> Response:
    _check_csrf(request, settings, csrf)
    pending = _pending(request, signed)
    try:  # the same per-account and per-address back-off as POST /api/v1/auth/token
        user = await limits.attempt(
            email,
            login_client(request),
            lambda: users.authenticate(session, hashing, email, password),
        )
    except TaskgateError as exc:
        page = await _login_page(request, settings, signed, exc.message, exc.http_status)
        retry_after = exc.details.get("retry_after_seconds")
        if retry_after is not None:
            page.headers["Retry-After"] = str(retry_after)
        return page
    code = await _provider(request).issue_code(pending, user.id)
    target = construct_redirect_uri(pending.redirect_uri, code=code, state=pending.state)
    redirect = RedirectResponse(target, status_code=302, headers={"Cache-Control": "no-store"})
    limits.remember_device(redirect, request, email)
    return redirect


@router.get(SIGNUP_PATH, response_class=HTMLResponse)
async def signup_page(request: Request, settings: SettingsDep, signed: RequestArg) -> HTMLResponse:
    _pending(request, signed)
    return _signup_page(request, settings, signed)


def _signup_page(
    request: Request, settings: Settings, signed: str, message: str | None = None, status: int = 200
) -> HTMLResponse:
    return _page(
        request, settings, "Sign up", _form(SIGNUP_PATH, signed, "Sign up", message), status
    )


@router.post(SIGNUP_PATH, response_model=None)
async def sign_up(
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    hashing: HashingDep,
    limits: SignupLimitsDep,
    signed: RequestField,
    csrf: CsrfField,
    email: EmailField,
    password: PasswordField,
) -> Response:
    _check_csrf(request, settings, csrf)
    _pending(request, signed)
    try:
        limits.take(client_address(request))
    except TaskgateError as exc:
        page = _signup_page(request, settings, signed, exc.message, exc.http_status)
        page.headers["Retry-After"] = str(exc.details["retry_after_seconds"])
        return page
    try:
        data = UserCreate(email=email, password=password)
    except ValidationError:
        message = (
            f"enter a valid email and a password of {PASSWORD_MIN} to {PASSWORD_MAX} characters"
        )
        return _signup_page(request, settings, signed, message, 422)
    try:
        await users.create_user(session, hashing, data)
    except TaskgateError as exc:
        return _signup_page(request, settings, signed, exc.message, exc.http_status)
    # Back to the login form, which then finishes the authorization.
    return RedirectResponse(f"{LOGIN_PATH}?{urlencode({'request': signed})}", status_code=303)
