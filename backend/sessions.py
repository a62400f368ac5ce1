"""Browser sessions: the session cookie set at login, and the CSRF token that goes with it.

The session cookie holds the same JWT as the bearer token, HttpOnly and SameSite=Strict.
SameSite does not stop a sibling subdomain (same site, other origin), so a request that
changes something and is authenticated by the cookie must also carry the CSRF token in the
X-CSRF-Token header. The token is an HMAC of the session token (a signed double-submit
cookie): script on the page can read it from its own cookie, another origin cannot.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request, Response

from shared.settings import Settings

SESSION_COOKIE = "taskgate_session"
CSRF_COOKIE = "taskgate_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token_for(settings: Settings, session_token: str) -> str:
    key = settings.jwt_secret.get_secret_value().encode()
    return hmac.new(key, b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()


def csrf_token_matches(settings: Settings, session_token: str, sent: str | None) -> bool:
    # As bytes: compare_digest raises on non-ASCII str, and headers may carry any latin-1.
    expected = csrf_token_for(settings, session_token).encode()
    return sent is not None and hmac.compare_digest(expected, sent.encode("utf-8"))


def set_session_cookies(
    response: Response, request: Request, settings: Settings, token: str
) -> None:
    # Secure when the client reached us over https (directly or, with --proxy-headers, via
    # a proxy); plain http stays usable for local development.
    secure = request.url.scheme == "https"
    for name, value, httponly in (
        (SESSION_COOKIE, token, True),
        (CSRF_COOKIE, csrf_token_for(settings, token), False),  # read by the page's script
    ):
        response.set_cookie(
            name,
            value,
            max_age=settings.jwt_ttl_seconds,
            path="/",
            secure=secure,
            httponly=httponly,
            samesite="strict",
        )


def clear_session_cookies(response: Response) -> None:
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", samesite="strict")
