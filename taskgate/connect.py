"""`taskgate connect [URL]`: a stdio MCP server that relays every message to a running gateway.

Clients that speak only stdio (Claude Desktop) reach a gateway over streamable HTTP without
database credentials or JWT_SECRET on their machine. The relay is transparent: the SDK's stdio
transport on one side, its streamable-HTTP client transport on the other, and messages copied
between them as they are, so the gateway's tools, errors and capabilities pass unchanged.

The token is MCP_TOKEN (the environment, or `.taskgate/dev.env` when no URL is given), or
else an OAuth 2.1 login through the SDK's client support: discovery from the gateway's 401,
dynamic registration, PKCE, a browser (the URL is printed to stderr too) and a loopback
redirect listener. Its tokens, refresh token included, stay in a 0600 file (tokens_file.py).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import webbrowser
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import uvicorn
from mcp.client._transport import ReadStream, WriteStream
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.server.stdio import stdio_server
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata
from mcp.shared.message import SessionMessage
from pydantic import AnyUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from shared.settings import Settings
from taskgate.devenv import dev_env_path, read_dev_env
from taskgate.tokens_file import FileTokenStorage, default_tokens_path

log = logging.getLogger("taskgate.connect")

CALLBACK_PATH = "/callback"
LOGIN_TIMEOUT_SECONDS = 300.0


class ConnectError(RuntimeError):
    """The bridge cannot start; the message says what to do."""


@dataclass(frozen=True)
class Target:
    url: str
    token: str | None  # None: log in with OAuth


def resolve_target(url: str | None, settings: Settings, cwd: Path) -> Target:
    """The gateway URL and token: the argument and MCP_TOKEN, or `.taskgate/dev.env`."""
    token = settings.mcp_token.get_secret_value() if settings.mcp_token else None
    if url:
        return Target(url, token)
    dev_env = dev_env_path(cwd)
    if not dev_env.is_file():
        raise ConnectError(
            f"no URL given and no {dev_env} here: run `taskgate connect <gateway URL>`, or "
            "start `taskgate dev` in this directory first"
        )
    values = read_dev_env(dev_env)
    dev_url = values.get("MCP_URL")
    if not dev_url:
        raise ConnectError(f"{dev_env} has no MCP_URL")
    return Target(dev_url, token or values.get("MCP_TOKEN") or None)


class LoopbackRedirect:
    """The RFC 8252 loopback redirect: a one-route HTTP listener on 127.0.0.1, any free port."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen()
        self.redirect_uri = f"http://127.0.0.1:{self._socket.getsockname()[1]}{CALLBACK_PATH}"
        self._result: AuthorizationCodeResult | None = None
        self._arrived = anyio.Event()

    async def _callback(self, request: Request) -> PlainTextResponse:
        params = request.query_params
        if "code" not in params:
            error = params.get("error", "no authorization code")
            return PlainTextResponse(f"taskgate: login failed ({error}).", status_code=400)
        self._result = AuthorizationCodeResult(
            code=params["code"], state=params.get("state"), iss=params.get("iss")
        )
        self._arrived.set()
        return PlainTextResponse("taskgate: logged in. You can close this tab.")

    async def wait_for_code(self) -> AuthorizationCodeResult:
        app = Starlette(routes=[Route(CALLBACK_PATH, self._callback)])
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [self._socket])
            with anyio.fail_after(LOGIN_TIMEOUT_SECONDS):
                await self._arrived.wait()
            server.should_exit = True
        assert self._result is not None
        return self._result

    def close(self) -> None:
        self._socket.close()


async def open_browser(url: str) -> None:
    # stderr, never stdout: stdout carries the MCP messages.
    print(f"taskgate: log in to the gateway in your browser: {url}", file=sys.stderr, flush=True)
    with contextlib.suppress(webbrowser.Error):  # the printed URL is the fallback
        webbrowser.open(url)


class StoredTokensOAuth(OAuthClientProvider):
    """The SDK's provider, able to refresh tokens that an earlier run stored.

    The SDK knows a token's expiry and the authorization server's metadata only for tokens it
    obtained in this process. After a restart it sent an expired token, was refused, and went
    through the browser again; and a refresh went to the gateway's origin, not the server that
    issued the token. The file keeps both (FileTokenStorage), so a stale token is refreshed.
    """

    def __init__(self, storage: FileTokenStorage, **kwargs: Any) -> None:
        super().__init__(storage=storage, **kwargs)
        self._file = storage

    async def _initialize(self) -> None:
        await super()._initialize()
        if self.context.current_tokens is not None:
            self.context.update_token_expiry(self.context.current_tokens)
        discovery = self._file.get_discovery()
        if self.context.oauth_metadata is None and discovery is not None:
            self.context.oauth_metadata, self.context.protected_resource_metadata = discovery

    async def _handle_token_response(self, response: httpx2.Response) -> None:
        await super()._handle_token_response(response)
        if self.context.oauth_metadata is not None:
            self._file.set_discovery(
                self.context.oauth_metadata, self.context.protected_resource_metadata
            )


def oauth_provider(url: str, storage: FileTokenStorage, redirect: LoopbackRedirect) -> httpx2.Auth:
    metadata = OAuthClientMetadata(
        client_name="taskgate connect",
        redirect_uris=[AnyUrl(redirect.redirect_uri)],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    return StoredTokensOAuth(
        server_url=url,
        client_metadata=metadata,
        storage=storage,
        redirect_handler=open_browser,
        callback_handler=redirect.wait_for_code,
    )


async def _pump(
    source: ReadStream[SessionMessage | Exception],
    sink: WriteStream[SessionMessage],
    side: str,
) -> None:
    async with sink:
        async for item in source:
            if isinstance(item, Exception):
                # The SDK answers a failed request with a JSON-RPC error of its own; say why.
                log.warning("%s: %s", side, type(item).__name__)
                continue
            await sink.send(item)


async def _say_why_refused(response: httpx2.Response) -> None:
    # The client only sees "Server returned an error response"; the person reads stderr.
    if response.status_code == 401:
        log.warning("the gateway refused MCP_TOKEN (401): it is expired or not for this gateway")


async def relay(url: str, auth: httpx2.Auth | None, headers: dict[str, str]) -> None:
    """Copy messages both ways until the stdio client goes away."""
    timeout = httpx2.Timeout(30.0, read=300.0)
    hooks = {"response": [_say_why_refused]} if auth is None else {}
    async with (
        httpx2.AsyncClient(auth=auth, headers=headers, timeout=timeout, event_hooks=hooks) as http,
        streamable_http_client(url, http_client=http) as (remote_read, remote_write),
        stdio_server() as (local_read, local_write),
        anyio.create_task_group() as tg,
    ):

        async def client_to_gateway() -> None:
            await _pump(local_read, remote_write, "gateway request")
            tg.cancel_scope.cancel()  # the client closed stdin: we are done

        tg.start_soon(client_to_gateway)
        await _pump(remote_read, local_write, "gateway")
        tg.cancel_scope.cancel()


def run_connect(url: str | None, settings: Settings, cwd: Path) -> int:
    try:
        target = resolve_target(url, settings, cwd)
    except ConnectError as problem:
        print(f"taskgate: {problem}", file=sys.stderr)
        return 2
    if target.token:
        anyio.run(relay, target.url, None, {"Authorization": f"Bearer {target.token}"})
        return 0
    tokens = (
        Path(settings.connect_tokens_file)
        if settings.connect_tokens_file
        else default_tokens_path()
    )
    redirect = LoopbackRedirect()
    try:
        storage = FileTokenStorage(tokens, target.url)
        anyio.run(relay, target.url, oauth_provider(target.url, storage, redirect), {})
    finally:
        redirect.close()
    return 0
