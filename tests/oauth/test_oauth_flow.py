"""An MCP client's whole OAuth 2.1 journey over real HTTP: discovery, registration, the login
form, PKCE, tool calls, expiry, refresh with rotation, and the revoked family after a reuse."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.support.oauth import (
    ACCEPT,
    ACCESS_TTL_SECONDS,
    LIST_TOOLS,
    OAuthStack,
    authorize_params,
    discover,
    log_in_for_code,
    open_login_page,
    pkce_pair,
    redeem,
    refresh,
    register,
    submit_login,
)


async def call(mcp_url: str, token: str, tool: str, arguments: dict[str, Any]) -> Any:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        Client(streamable_http_client(mcp_url, http_client=http)) as client,
    ):
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return result.structured_content


async def test_an_mcp_client_logs_in_calls_tools_refreshes_and_a_reused_refresh_token_is_refused(
    oauth_stack: OAuthStack,
) -> None:
    agent = oauth_stack.agent()
    with oauth_stack.client() as http:
        found = discover(http, oauth_stack.mcp_url)
        assert found.resource == oauth_stack.mcp_url
        assert found.issuer == oauth_stack.backend_url
        assert found.metadata["issuer"] == oauth_stack.backend_url  # RFC 8414 3.3: identical
        assert found.metadata["code_challenge_methods_supported"] == ["S256"]
        assert {"authorization_code", "refresh_token"} <= set(
            found.metadata["grant_types_supported"]
        )

        # Registered on one loopback port, redirected to another (RFC 8252 section 7.3).
        client_id = register(http, found, "http://127.0.0.1:1/callback")
        redirect_uri = "http://127.0.0.1:54321/callback"
        code, verifier = log_in_for_code(
            http, found, client_id, redirect_uri, agent.email, agent.password, found.resource
        )
        issued = redeem(http, found, client_id, code, verifier, redirect_uri, found.resource)
        assert issued.status_code == 200, issued.text
        assert issued.headers["Cache-Control"] == "no-store"
        first = issued.json()
        assert first["token_type"] == "Bearer" and first["expires_in"] == ACCESS_TTL_SECONDS

        created = await call(
            oauth_stack.mcp_url, first["access_token"], "create_task", {"title": "via OAuth"}
        )
        assert created["user_id"] == agent.id
        listed = await call(oauth_stack.mcp_url, first["access_token"], "list_tasks", {})
        assert [t["title"] for t in listed["tasks"]] == ["via OAuth"]

        await asyncio.sleep(ACCESS_TTL_SECONDS + 1)
        expired = http.post(
            oauth_stack.mcp_url,
            json=LIST_TOOLS,
            headers={**ACCEPT, "Authorization": f"Bearer {first['access_token']}"},
        )
        assert expired.status_code == 401

        renewed = refresh(http, found, client_id, first["refresh_token"], found.resource)
        assert renewed.status_code == 200, renewed.text
        second = renewed.json()
        assert second["refresh_token"] != first["refresh_token"]  # rotated
        listed = await call(oauth_stack.mcp_url, second["access_token"], "list_tasks", {})
        assert [t["title"] for t in listed["tasks"]] == ["via OAuth"]

        # The rotated token again: refused, and its whole family with it.
        reused = refresh(http, found, client_id, first["refresh_token"], None)
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
        after_reuse = refresh(http, found, client_id, second["refresh_token"], None)
        assert after_reuse.status_code == 400 and after_reuse.json()["error"] == "invalid_grant"


def test_the_login_form_refuses_a_post_without_its_csrf_token(oauth_stack: OAuthStack) -> None:
    agent = oauth_stack.agent()
    with oauth_stack.client() as http:
        found = discover(http, oauth_stack.mcp_url)
        client_id = register(http, found, "http://127.0.0.1:1/callback")
        _, challenge = pkce_pair()
        params = authorize_params(
            client_id, "http://127.0.0.1:1/callback", challenge, found.resource, "s"
        )
        page = open_login_page(http, found, params)
        assert page.headers["X-Frame-Options"] == "DENY"
        assert 'href="/oauth/signup?' in page.text  # sign-up is linked from the login page

        forged = submit_login(http, page, agent.email, agent.password, csrf="0" * 64)
        assert forged.status_code == 403
        assert json.loads(forged.text)["error_code"] == "forbidden"

        http.cookies.clear()  # another site's form: the browser sends no CSRF cookie
        cross_site = submit_login(http, page, agent.email, agent.password)
        assert cross_site.status_code == 403

        wrong_password = oauth_stack.client()
        with wrong_password:
            page = open_login_page(wrong_password, found, params)
            refused = submit_login(wrong_password, page, agent.email, "not-the-password")
            assert refused.status_code == 401 and "Location" not in refused.headers
            assert "email or password is wrong" in refused.text
