"""`taskgate connect`'s OAuth wiring and token file, against a small fake gateway and
authorization server on loopback (the real authorization server is the backend's, built
separately): discovery from the 401, registration, PKCE S256, the RFC 8707 resource, the
loopback redirect, and a 0600 file that keeps the refresh token."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import stat
import threading
import webbrowser
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import uvicorn
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from shared.settings import Settings
from taskgate.connect import ConnectError, LoopbackRedirect, oauth_provider, resolve_target
from taskgate.tokens_file import FileTokenStorage


class FakeAuthorization:
    """A protected /mcp and the authorization server it names; records what clients sent."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.mcp = f"{base}/mcp"
        self.seen: dict[str, Any] = {}
        self.challenge = ""

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/mcp", self.protected, methods=["POST"]),
                Route("/.well-known/oauth-protected-resource/mcp", self.resource_metadata),
                Route("/.well-known/oauth-authorization-server", self.server_metadata),
                Route("/register", self.register, methods=["POST"]),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
            ]
        )

    async def protected(self, request: Request) -> Response:
        if request.headers.get("authorization") == "Bearer access-1":
            return JSONResponse({"ok": True})
        metadata = f"{self.base}/.well-known/oauth-protected-resource/mcp"
        return Response(
            status_code=401,
            headers={"WWW-Authenticate": f'Bearer resource_metadata="{metadata}"'},
        )

    async def resource_metadata(self, _: Request) -> Response:
        return JSONResponse({"resource": self.mcp, "authorization_servers": [f"{self.base}/"]})

    async def server_metadata(self, _: Request) -> Response:
        return JSONResponse(
            {
                "issuer": f"{self.base}/",
                "authorization_endpoint": f"{self.base}/authorize",
                "token_endpoint": f"{self.base}/token",
                "registration_endpoint": f"{self.base}/register",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none"],
            }
        )

    async def register(self, request: Request) -> Response:
        body = await request.json()
        self.seen["registration"] = body
        return JSONResponse({**body, "client_id": "client-1"}, status_code=201)

    async def authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.seen["authorize"] = params
        self.challenge = params["code_challenge"]
        state = params["state"]
        return RedirectResponse(f"{params['redirect_uri']}?code=code-1&state={state}")

    async def token(self, request: Request) -> Response:
        form = dict(await request.form())
        self.seen["token"] = form
        digest = hashlib.sha256(str(form["code_verifier"]).encode()).digest()
        verifier_ok = base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == self.challenge
        if form.get("code") != "code-1" or not verifier_ok:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        return JSONResponse(
            {
                "access_token": "access-1",
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": "refresh-1",
            }
        )


@asynccontextmanager
async def fake_servers() -> AsyncIterator[FakeAuthorization]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()  # connections wait in the backlog until the server accepts them
    fake = FakeAuthorization(f"http://127.0.0.1:{sock.getsockname()[1]}")
    server = uvicorn.Server(uvicorn.Config(fake.app(), log_config=None, lifespan="off"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            yield fake
        finally:
            server.should_exit = True


def a_browser_that_follows_redirects(opened: list[str]) -> Any:
    def open_url(url: str) -> bool:
        opened.append(url)
        # Off the event loop, which must stay free to serve the loopback redirect.
        threading.Thread(target=httpx.get, args=(url,), kwargs={"follow_redirects": True}).start()
        return True

    return open_url


async def test_oauth_login_registers_uses_pkce_and_keeps_the_refresh_token_in_a_0600_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", a_browser_that_follows_redirects(opened))
    tokens = tmp_path / "config" / "taskgate" / "tokens.json"
    async with fake_servers() as fake:
        redirect = LoopbackRedirect()
        try:
            provider = oauth_provider(fake.mcp, FileTokenStorage(tokens, fake.mcp), redirect)
            async with httpx2.AsyncClient(auth=provider) as http:
                reply = await http.post(fake.mcp, json={})
        finally:
            redirect.close()
        assert reply.status_code == 200

        # A second run uses the stored token: no browser.
        monkeypatch.setattr(webbrowser, "open", lambda url: pytest.fail("browser"))
        redirect = LoopbackRedirect()
        try:
            provider = oauth_provider(fake.mcp, FileTokenStorage(tokens, fake.mcp), redirect)
            async with httpx2.AsyncClient(auth=provider) as http:
                assert (await http.post(fake.mcp, json={})).status_code == 200
        finally:
            redirect.close()

    authorize = fake.seen["authorize"]
    assert authorize["code_challenge_method"] == "S256"
    assert authorize["resource"] == fake.mcp
    assert authorize["redirect_uri"].startswith("http://127.0.0.1:")
    assert fake.seen["token"]["resource"] == fake.mcp
    assert fake.seen["registration"]["token_endpoint_auth_method"] == "none"
    assert len(opened) == 1 and opened[0].startswith(f"{fake.base}/authorize?")
    assert opened[0] in capsys.readouterr().err  # the printed fallback, on stderr

    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    assert stat.S_IMODE(tokens.parent.stat().st_mode) == 0o700
    stored = FileTokenStorage(tokens, fake.mcp)
    saved = await stored.get_tokens()
    assert saved is not None and saved.refresh_token == "refresh-1"
    client = await stored.get_client_info()
    assert client is not None and client.client_id == "client-1"


async def test_the_token_file_keeps_one_entry_per_gateway_and_stays_0600(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    one = FileTokenStorage(path, "http://one.test/mcp")
    two = FileTokenStorage(path, "http://two.test/mcp")
    await one.set_tokens(OAuthToken(access_token="a1", refresh_token="r1"))
    await two.set_tokens(OAuthToken(access_token="a2", refresh_token="r2"))
    await one.set_client_info(
        OAuthClientInformationFull(client_id="c1", redirect_uris=["http://127.0.0.1:1/callback"])
    )
    first, second = await one.get_tokens(), await two.get_tokens()
    assert first is not None and first.refresh_token == "r1"
    assert second is not None and second.refresh_token == "r2"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["tokens.json"]  # no temp file left
    assert await FileTokenStorage(path, "http://three.test/mcp").get_tokens() is None


def settings_with(**changes: Any) -> Settings:
    return Settings(_env_file=None, **changes)


def test_the_target_comes_from_the_argument_and_mcp_token(tmp_path: Path) -> None:
    target = resolve_target("http://gw.test/mcp", settings_with(mcp_token="tok"), tmp_path)
    assert (target.url, target.token) == ("http://gw.test/mcp", "tok")
    assert resolve_target("http://gw.test/mcp", settings_with(), tmp_path).token is None


def test_with_no_argument_the_target_comes_from_dev_env(tmp_path: Path) -> None:
    (tmp_path / ".taskgate").mkdir()
    (tmp_path / ".taskgate" / "dev.env").write_text(
        "MCP_URL=http://127.0.0.1:8001/mcp\nMCP_URL_2=http://127.0.0.1:8002/mcp\nMCP_TOKEN=dev\n"
    )
    target = resolve_target(None, settings_with(), tmp_path)
    assert (target.url, target.token) == ("http://127.0.0.1:8001/mcp", "dev")
    # MCP_TOKEN in the environment wins over the file's.
    assert resolve_target(None, settings_with(mcp_token="mine"), tmp_path).token == "mine"


def test_with_no_argument_and_no_dev_env_the_bridge_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConnectError, match="taskgate dev"):
        resolve_target(None, settings_with(), tmp_path)
