"""`taskgate connect [URL]`: a stdio MCP server that relays every message to a running gateway;
`taskgate connect --login [URL]`: the OAuth login that the relay then uses, done ahead of time.

Clients that speak only stdio (Claude Desktop) reach a gateway over streamable HTTP without
database credentials or JWT_SECRET on their machine. The relay is transparent: the SDK's stdio
transport on one side, its streamable-HTTP client transport on the other, and messages copied
between them as they are, so the gateway's tools, errors and capabilities pass unchanged.

The token is MCP_TOKEN (the environment, or `.taskgate/dev.env` when no URL is given), or the
tokens `--login` stored: an OAuth 2.1 login through the SDK's client support (discovery from the
gateway's 401, dynamic registration, PKCE, the login URL printed at once, and a loopback
redirect listener on a port that may be fixed for an SSH forward). They stay in a 0600 file
(tokens_file.py), and the relay refreshes them. The relay never waits for a browser: a request
it holds no usable tokens for is answered at once with an error that says to run `--login`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import webbrowser
from collections.abc import Awaitable, Callable
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
# A JSON-RPC error code in the range the spec leaves to servers: no usable tokens.
LOGIN_REQUIRED_CODE = -32001
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "taskgate connect --login", "version": "1"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}
RELAY_TIMEOUT = httpx2.Timeout(30.0, read=300.0)


class ConnectError(RuntimeError):
    """The bridge cannot start; the message says what to do."""


class LoginRequired(Exception):
    """The relay holds no tokens it can use or refresh; a person must run `--login`."""


def login_hint(url: str) -> str:
    return f"not logged in to {url}: run `taskgate connect --login {url}` in a terminal"


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
    """The RFC 8252 loopback redirect: a one-route HTTP listener on 127.0.0.1, on `port` (one an
    SSH user can forward) or any free one."""

    def __init__(self, port: int = 0) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._socket.bind(("127.0.0.1", port))
        except OSError as exc:
            self._socket.close()
            raise ConnectError(
                f"--callback-port {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror}); "
                "choose another"
            ) from None
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


async def print_login_url(url: str) -> None:
    """No graphical session: a browser started here would be a text one in this terminal."""
    print(f"taskgate connect: open this URL in a browser to log in: {url}", file=sys.stderr)
    sys.stderr.flush()


def has_display() -> bool:
    graphical = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    return bool(graphical) or sys.platform in ("darwin", "win32")


async def refuse_login(url: str) -> None:
    raise LoginRequired(url)


async def no_code() -> AuthorizationCodeResult:
    raise LoginRequired("no login in the relay")


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


def _client_metadata(redirect_uri: str) -> OAuthClientMetadata:
    return OAuthClientMetadata(
        client_name="taskgate connect",
        redirect_uris=[AnyUrl(redirect_uri)],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )


def oauth_provider(
    url: str,
    storage: FileTokenStorage,
    redirect: LoopbackRedirect,
    show_url: Callable[[str], Awaitable[None]] = open_browser,
) -> httpx2.Auth:
    """The login: the URL shown (and a browser opened, where there is one), the code awaited."""
    return StoredTokensOAuth(
        server_url=url,
        client_metadata=_client_metadata(redirect.redirect_uri),
        storage=storage,
        redirect_handler=show_url,
        callback_handler=redirect.wait_for_code,
    )


def relay_provider(url: str, storage: FileTokenStorage) -> httpx2.Auth:
    """Stored tokens, refreshed as they expire; a login it would need raises LoginRequired."""
    return StoredTokensOAuth(
        server_url=url,
        # Only used to register a client, which needs a login anyway: never reached.
        client_metadata=_client_metadata(f"http://127.0.0.1{CALLBACK_PATH}"),
        storage=storage,
        redirect_handler=refuse_login,
        callback_handler=no_code,
    )


class RelayClient(httpx2.AsyncClient):
    """The relay's client to the gateway: a request it cannot authorize without a person gets,
    at once, a JSON-RPC error saying to run `--login`, which the SDK's transport hands to the
    stdio client as the answer to that request."""

    def __init__(self, hint: str, storage: FileTokenStorage, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hint = hint
        self._storage = storage

    async def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        if await self._storage.get_tokens() is None:
            return self._login_required(request)
        try:
            return await super().send(request, **kwargs)
        except LoginRequired:
            return self._login_required(request)

    def _login_required(self, request: httpx2.Request) -> httpx2.Response:
        log.warning("%s", self._hint)
        try:
            request_id = json.loads(request.content or b"null").get("id")
        except (ValueError, AttributeError):
            request_id = None
        error = {"code": LOGIN_REQUIRED_CODE, "message": f"taskgate connect: {self._hint}"}
        return httpx2.Response(
            401, json={"jsonrpc": "2.0", "id": request_id, "error": error}, request=request
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


def token_client(token: str) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"}
    hooks = {"response": [_say_why_refused]}
    return httpx2.AsyncClient(headers=headers, timeout=RELAY_TIMEOUT, event_hooks=hooks)


def stored_tokens_client(url: str, storage: FileTokenStorage) -> httpx2.AsyncClient:
    return RelayClient(
        login_hint(url), storage, auth=relay_provider(url, storage), timeout=RELAY_TIMEOUT
    )


async def relay(url: str, http_client: httpx2.AsyncClient) -> None:
    """Copy messages both ways until the stdio client goes away."""
    async with (
        http_client as http,
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


def tokens_path(settings: Settings) -> Path:
    if settings.connect_tokens_file:
        return Path(settings.connect_tokens_file)
    return default_tokens_path()


def run_connect(url: str | None, settings: Settings, cwd: Path) -> int:
    try:
        target = resolve_target(url, settings, cwd)
    except ConnectError as problem:
        print(f"taskgate connect: {problem}", file=sys.stderr)
        return 2
    if target.token:
        say(f"relaying stdio to {target.url} with MCP_TOKEN")
        anyio.run(relay, target.url, token_client(target.token))
        return 0
    storage = FileTokenStorage(tokens_path(settings), target.url)
    say(f"relaying stdio to {target.url} with the tokens in {storage.path}")
    if anyio.run(storage.get_tokens) is None:
        say(login_hint(target.url))
    anyio.run(relay, target.url, stored_tokens_client(target.url, storage))
    return 0


def run_login(url: str | None, settings: Settings, cwd: Path, callback_port: int) -> int:
    """Log in once, store the tokens, exit: what the relay then runs on."""
    try:
        target = resolve_target(url, settings, cwd)
        redirect = LoopbackRedirect(callback_port)
    except ConnectError as problem:
        print(f"taskgate connect: {problem}", file=sys.stderr)
        return 2
    storage = FileTokenStorage(tokens_path(settings), target.url)
    storage.forget_tokens()  # a new login, perhaps as someone else
    show = open_browser if has_display() else print_login_url
    say(f"logging in to {target.url}; the browser is sent back to {redirect.redirect_uri}")
    try:
        status = anyio.run(_logged_in_request, target.url, storage, redirect, show)
    except TimeoutError:
        print(
            f"taskgate connect: no login within {LOGIN_TIMEOUT_SECONDS:.0f}s; run it again",
            file=sys.stderr,
        )
        return 1
    finally:
        redirect.close()
    if status >= 400 or anyio.run(storage.get_tokens) is None:
        print(f"taskgate connect: the gateway answered {status} after the login", file=sys.stderr)
        return 1
    say(f"logged in; tokens for {target.url} stored in {storage.path}")
    return 0


async def _logged_in_request(
    url: str,
    storage: FileTokenStorage,
    redirect: LoopbackRedirect,
    show: Callable[[str], Awaitable[None]],
) -> int:
    auth = oauth_provider(url, storage, redirect, show)
    async with httpx2.AsyncClient(auth=auth, timeout=RELAY_TIMEOUT) as http:
        reply = await http.post(url, json=INITIALIZE, headers=MCP_HEADERS)
        return reply.status_code


def say(message: str) -> None:
    """A line for the person on stderr, at once: stdout carries the MCP messages."""
    print(f"taskgate connect: {message}", file=sys.stderr, flush=True)
