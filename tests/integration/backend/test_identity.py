"""Sign-up, login, tokens and the browser session, on the real primary."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie

import httpx
import jwt
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.sessions import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from shared.settings import Settings
from shared.tokens import ALGORITHM
from tests.support.backend_api import SignedUp, asgi_client, sign_up


def _claims(settings: Settings, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "1",
        "iat": now,
        "exp": now + 600,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(settings: Settings, claims: dict[str, object], secret: str | None = None) -> str:
    key = secret or settings.jwt_secret.get_secret_value()
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _set_cookies(response: httpx.Response) -> dict[str, SimpleCookie]:
    cookies: dict[str, SimpleCookie] = {}
    for header in response.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        for name in cookie:
            cookies[name] = cookie
    return cookies


async def test_password_is_stored_as_an_argon2_hash(
    api: httpx.AsyncClient, user: SignedUp, primary: AsyncEngine
) -> None:
    async with primary.connect() as conn:
        stored = await conn.scalar(
            text("SELECT password_hash FROM users WHERE id = :id"), {"id": user.id}
        )
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert user.password not in stored


async def test_email_is_unique_whatever_its_case(api: httpx.AsyncClient, user: SignedUp) -> None:
    again = await api.post(
        "/api/v1/users", json={"email": user.email.upper(), "password": "another-password"}
    )
    assert again.status_code == 409
    assert again.json()["error_code"] == "conflict"


async def test_login_accepts_the_email_in_any_case(api: httpx.AsyncClient, user: SignedUp) -> None:
    login = await api.post(
        "/api/v1/auth/token",
        data={"username": f"  {user.email.upper()} ", "password": user.password},
    )
    assert login.status_code == 200
    me = await api.get("/api/v1/users/me", headers=_bearer(login.json()["access_token"]))
    assert me.json()["id"] == user.id


async def test_wrong_password_and_unknown_email_get_the_same_answer(
    api: httpx.AsyncClient, user: SignedUp
) -> None:
    wrong_password = await api.post(
        "/api/v1/auth/token", data={"username": user.email, "password": "not-the-password"}
    )
    unknown_email = await api.post(
        "/api/v1/auth/token",
        data={"username": f"nobody-{uuid.uuid4().hex}@example.com", "password": user.password},
    )
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.json()["error_code"] == "unauthorized"


async def test_sign_up_refuses_a_short_password_and_a_bad_email(api: httpx.AsyncClient) -> None:
    short = await api.post(
        "/api/v1/users", json={"email": f"{uuid.uuid4().hex}@example.com", "password": "short"}
    )
    bad_email = await api.post(
        "/api/v1/users", json={"email": "not-an-email", "password": "long-enough-password"}
    )
    for response, field in ((short, "password"), (bad_email, "email")):
        assert response.status_code == 422
        assert [e["field"] for e in response.json()["details"]["errors"]] == [field]
        # The rejected value is the caller's secret or data: it is not echoed back.
        assert all("input" not in e for e in response.json()["details"]["errors"])


async def test_token_carries_the_registered_claims(
    api: httpx.AsyncClient, user: SignedUp, settings: Settings
) -> None:
    claims = jwt.decode(
        user.token,
        settings.jwt_secret.get_secret_value(),
        algorithms=[ALGORITHM],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    assert claims["sub"] == str(user.id)
    assert claims["exp"] - claims["iat"] == settings.jwt_ttl_seconds
    assert {"sub", "exp", "iat", "iss", "aud"} <= set(claims)


async def test_task_routes_refuse_a_missing_token(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/tasks")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error_code"] == "unauthorized"


async def test_task_routes_refuse_tokens_that_do_not_verify(
    api: httpx.AsyncClient, user: SignedUp, settings: Settings
) -> None:
    uid = str(user.id)
    bad_tokens = {
        "expired": _sign(settings, _claims(settings, sub=uid, exp=int(time.time()) - 60)),
        "other secret": _sign(settings, _claims(settings, sub=uid), secret="x" * 40),
        "other audience": _sign(settings, _claims(settings, sub=uid, aud="someone-else")),
        "other issuer": _sign(settings, _claims(settings, sub=uid, iss="someone-else")),
        "no expiry": _sign(settings, _claims(settings, sub=uid, exp=None)),
        "non-ascii subject": _sign(settings, _claims(settings, sub="\u00b2")),
        "subject past bigint": _sign(settings, _claims(settings, sub="9" * 30)),
        "numeric subject": _sign(settings, _claims(settings, sub=user.id)),
        "unsigned": jwt.encode(_claims(settings, sub=uid), key=None, algorithm="none"),  # type: ignore[arg-type]
        "tampered": user.token[:-4] + ("AAAA" if not user.token.endswith("AAAA") else "BBBB"),
        "garbage": "not-a-jwt",
    }
    for name, token in bad_tokens.items():
        response = await api.get("/api/v1/tasks", headers=_bearer(token))
        assert response.status_code == 401, name
        assert response.json()["error_code"] == "unauthorized", name


async def test_authorization_header_must_use_the_bearer_scheme(
    api: httpx.AsyncClient, user: SignedUp
) -> None:
    response = await api.get("/api/v1/tasks", headers={"Authorization": f"Basic {user.token}"})
    assert response.status_code == 401


async def test_token_of_a_deleted_user_is_refused(
    api: httpx.AsyncClient, primary: AsyncEngine
) -> None:
    doomed = await sign_up(api)
    assert (await api.get("/api/v1/tasks", headers=doomed.auth)).status_code == 200
    async with primary.begin() as conn:
        await conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": doomed.id})
    response = await api.get("/api/v1/tasks", headers=doomed.auth)
    assert response.status_code == 401
    assert response.json()["error_code"] == "unauthorized"
    create = await api.post("/api/v1/tasks", json={"title": "ghost"}, headers=doomed.auth)
    assert create.status_code == 401


async def test_login_sets_a_strict_http_only_session_cookie(
    api: httpx.AsyncClient, user: SignedUp
) -> None:
    login = await api.post(
        "/api/v1/auth/token", data={"username": user.email, "password": user.password}
    )
    cookies = _set_cookies(login)
    session = cookies[SESSION_COOKIE][SESSION_COOKIE]
    assert session.value == login.json()["access_token"]
    assert session["httponly"] is True
    assert session["samesite"].lower() == "strict"
    csrf = cookies[CSRF_COOKIE][CSRF_COOKIE]
    assert not csrf["httponly"]  # the page's script reads it to send it back as a header
    assert csrf["samesite"].lower() == "strict"


@asynccontextmanager
async def _browser(app: FastAPI, user: SignedUp) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client that logged in and holds only the cookies, no Authorization header."""
    async with asgi_client(app) as browser:
        login = await browser.post(
            "/api/v1/auth/token", data={"username": user.email, "password": user.password}
        )
        assert login.status_code == 200
        yield browser, str(browser.cookies[CSRF_COOKIE])


async def test_session_cookie_authenticates_reads(
    api: httpx.AsyncClient, backend_app: FastAPI, user: SignedUp
) -> None:
    async with _browser(backend_app, user) as (browser, _):
        me = await browser.get("/api/v1/users/me")
    assert me.status_code == 200
    assert me.json()["id"] == user.id


async def test_cookie_write_without_the_csrf_header_is_forbidden(
    api: httpx.AsyncClient, backend_app: FastAPI, user: SignedUp
) -> None:
    async with _browser(backend_app, user) as (browser, csrf):
        missing = await browser.post("/api/v1/tasks", json={"title": "forged"})
        wrong = await browser.post(
            "/api/v1/tasks", json={"title": "forged"}, headers={CSRF_HEADER: "0" * len(csrf)}
        )
        not_ascii = await browser.post(
            "/api/v1/tasks",
            json={"title": "forged"},
            headers={CSRF_HEADER: b"\xff" * 8},  # type: ignore[arg-type]
        )
        allowed = await browser.post(
            "/api/v1/tasks", json={"title": "mine"}, headers={CSRF_HEADER: csrf}
        )
    for response in (missing, wrong, not_ascii):
        assert response.status_code == 403
        assert response.json()["error_code"] == "forbidden"
    assert allowed.status_code == 201
    listed = await api.get("/api/v1/tasks", headers=user.auth)
    assert [t["title"] for t in listed.json()["tasks"]] == ["mine"]


async def test_csrf_token_of_one_session_does_not_fit_another(
    api: httpx.AsyncClient, backend_app: FastAPI, user: SignedUp, other_user: SignedUp
) -> None:
    async with (
        _browser(backend_app, user) as (browser, _),
        _browser(backend_app, other_user) as (_, other_csrf),
    ):
        response = await browser.post(
            "/api/v1/tasks", json={"title": "forged"}, headers={CSRF_HEADER: other_csrf}
        )
    assert response.status_code == 403


async def test_logout_clears_the_session_cookies(
    api: httpx.AsyncClient, backend_app: FastAPI, user: SignedUp
) -> None:
    async with _browser(backend_app, user) as (browser, _):
        logout = await browser.post("/api/v1/auth/logout")
        after = await browser.get("/api/v1/users/me")
    assert logout.status_code == 204
    assert set(_set_cookies(logout)) == {SESSION_COOKIE, CSRF_COOKIE}
    assert after.status_code == 401
