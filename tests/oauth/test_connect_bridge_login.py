"""`taskgate connect`'s OAuth login (the MCP Python SDK's client) against the real authorization
server: the "browser" fills the login page, the bridge's loopback listener gets the code, and the
stored tokens later refresh without a second login."""

from __future__ import annotations

import asyncio
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path

import httpx
import httpx2
import pytest

from taskgate.connect import LoopbackRedirect, oauth_provider
from taskgate.tokens_file import FileTokenStorage
from tests.support.oauth import ACCEPT, ACCESS_TTL_SECONDS, LIST_TOOLS, OAuthStack, submit_login


def a_person_who_logs_in(email: str, password: str, opened: list[str]) -> Callable[[str], bool]:
    def log_in(url: str) -> None:
        with httpx.Client(timeout=30) as browser:
            start = browser.get(url)  # /authorize
            page = browser.get(start.headers["Location"])  # the login page
            done = submit_login(browser, page, email, password)
            browser.get(done.headers["Location"])  # the bridge's loopback /callback

    def open_url(url: str) -> bool:
        opened.append(url)
        # Off the event loop, which must stay free to serve the loopback redirect.
        threading.Thread(target=log_in, args=(url,), daemon=True).start()
        return True

    return open_url


async def list_tools(url: str, provider: httpx2.Auth) -> httpx2.Response:
    async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
        return await http.post(url, json=LIST_TOOLS, headers=ACCEPT)


async def test_taskgate_connect_logs_in_on_the_real_login_page_and_refreshes(
    oauth_stack: OAuthStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = oauth_stack.agent()
    opened: list[str] = []
    monkeypatch.setattr(
        webbrowser, "open", a_person_who_logs_in(agent.email, agent.password, opened)
    )
    tokens = tmp_path / "tokens.json"

    storage = FileTokenStorage(tokens, oauth_stack.mcp_url)
    redirect = LoopbackRedirect()
    try:
        provider = oauth_provider(oauth_stack.mcp_url, storage, redirect)
        assert (await list_tools(oauth_stack.mcp_url, provider)).status_code == 200
        assert len(opened) == 1 and opened[0].startswith(f"{oauth_stack.backend_url}/authorize?")
        before = await storage.get_tokens()

        # The same bridge later, its access token expired: the refresh token renews it, no browser.
        await asyncio.sleep(ACCESS_TTL_SECONDS + 1)
        monkeypatch.setattr(webbrowser, "open", lambda url: pytest.fail("a second login"))
        assert (await list_tools(oauth_stack.mcp_url, provider)).status_code == 200
        after = await storage.get_tokens()

        # A new bridge process on the same file, its stored token expired meanwhile: it refreshes
        # (the file keeps the absolute expiry), still no browser.
        await asyncio.sleep(ACCESS_TTL_SECONDS + 1)
        restarted = FileTokenStorage(tokens, oauth_stack.mcp_url)
        provider = oauth_provider(oauth_stack.mcp_url, restarted, redirect)
        assert (await list_tools(oauth_stack.mcp_url, provider)).status_code == 200
        renewed = await restarted.get_tokens()
    finally:
        redirect.close()
    assert before is not None and after is not None and renewed is not None
    assert after.refresh_token != before.refresh_token  # rotated, and kept in the file
    assert renewed.refresh_token != after.refresh_token
