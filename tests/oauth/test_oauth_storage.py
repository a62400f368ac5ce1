"""What the authorization server keeps in PostgreSQL: hashes only, codes that expire, and a
sign-up on the login page that finishes the authorization."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from taskgate.pgpair import PgPair
from tests.support.oauth import (
    UNFOLLOWED_REDIRECT,
    OAuthStack,
    authorize_params,
    code_for_a_new_agent,
    code_from,
    discover,
    hidden_field,
    open_login_page,
    pkce_pair,
    redeem,
    register,
    submit_login,
)

REDIRECT = UNFOLLOWED_REDIRECT


@pytest.fixture
async def primary(pg_pair: PgPair) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(pg_pair.database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def test_codes_and_refresh_tokens_are_stored_as_hashes_only(
    oauth_stack: OAuthStack, primary: AsyncEngine
) -> None:
    with oauth_stack.client() as http:
        found, client_id, code, verifier = code_for_a_new_agent(oauth_stack, http)
        async with primary.connect() as db:
            stored = (
                (
                    await db.execute(
                        text("SELECT * FROM oauth_codes WHERE client_id = :c"), {"c": client_id}
                    )
                )
                .mappings()
                .one()
            )
        assert stored["code_hash"] == sha256(code)
        assert code not in str(dict(stored))
        tokens = redeem(http, found, client_id, code, verifier, REDIRECT, found.resource).json()
        async with primary.connect() as db:
            rows = (
                (
                    await db.execute(
                        text("SELECT * FROM oauth_refresh_tokens WHERE client_id = :c"),
                        {"c": client_id},
                    )
                )
                .mappings()
                .all()
            )
        assert [r["token_hash"] for r in rows] == [sha256(tokens["refresh_token"])]
        assert tokens["refresh_token"] not in str([dict(r) for r in rows])


async def test_an_expired_code_is_refused(oauth_stack: OAuthStack, primary: AsyncEngine) -> None:
    with oauth_stack.client() as http:
        found, client_id, code, verifier = code_for_a_new_agent(oauth_stack, http)
        async with primary.begin() as db:  # 61 s later, as far as the server can tell
            await db.execute(
                text(
                    "UPDATE oauth_codes SET expires_at = now() - interval '1 second'"
                    " WHERE code_hash = :h"
                ),
                {"h": sha256(code)},
            )
        reply = redeem(http, found, client_id, code, verifier, REDIRECT, found.resource)
        assert reply.status_code == 400 and reply.json()["error"] == "invalid_grant"


def test_a_new_user_signs_up_from_the_login_page_and_the_authorization_goes_on(
    oauth_stack: OAuthStack,
) -> None:
    email, password = f"new-{uuid.uuid4().hex[:10]}@example.com", uuid.uuid4().hex
    with oauth_stack.client() as http:
        found = discover(http, oauth_stack.mcp_url)
        client_id = register(http, found, REDIRECT)
        verifier, challenge = pkce_pair()
        params = authorize_params(client_id, REDIRECT, challenge, found.resource, "s1")
        login = open_login_page(http, found, params)
        signup_url = login.text.split('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
        page = http.get(oauth_stack.backend_url + signup_url)
        assert page.status_code == 200 and "Sign up" in page.text
        form = {
            "request": hidden_field(page.text, "request"),
            "csrf": hidden_field(page.text, "csrf"),
            "email": email,
            "password": password,
        }
        created = http.post(f"{oauth_stack.backend_url}/oauth/signup", data=form)
        assert created.status_code == 303
        back = http.get(oauth_stack.backend_url + created.headers["Location"])
        code = code_from(submit_login(http, back, email, password), "s1")
        tokens = redeem(http, found, client_id, code, verifier, REDIRECT, found.resource)
        assert tokens.status_code == 200, tokens.text
