"""`taskgate connect --login` on a machine with no browser, as over SSH: it prints the login URL
at once, headless Chromium (the person's browser at the other end of the tunnel) fills the real
login page, the fixed callback port receives the code, the tokens are stored and the command
exits. The relay then starts with a line at once, serves with those tokens, refreshes them, and
never waits for a login: without tokens, `initialize` is answered at once with what to run."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from selenium.webdriver.common.by import By

from tests.support.browser import chromium
from tests.support.oauth import ACCESS_TTL_SECONDS, OAuthStack
from tests.support.ports import free_port

LOGIN_LINE = "taskgate connect: open this URL in a browser to log in: "
# A login is a person's pace; these bound a test that went wrong, they time nothing.
LOGIN_URL_WAIT = 60.0
NO_LOGIN_WAIT = 30.0


def headless_env(tokens: Path) -> dict[str, str]:
    """A client's environment on a server: no display, no token, no server secrets."""
    drop = ("DISPLAY", "WAYLAND_DISPLAY", "MCP_TOKEN", "DATABASE_URL", "READ_DATABASE_URL",
            "JWT_SECRET", "ADMIN_TOKEN")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "CONNECT_TOKENS_FILE": str(tokens)}


def taskgate_connect(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "taskgate", "connect", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def collect(stream: object, into: list[str]) -> threading.Thread:
    def read() -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line.rstrip("\n"))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def wait_for_line(lines: list[str], prefix: str, process: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + LOGIN_URL_WAIT
    while True:
        found = [line for line in lines if line.startswith(prefix)]
        if found:
            return found[0]
        assert process.poll() is None, f"exited {process.returncode}: {lines}"
        assert time.monotonic() < deadline, f"no line starting {prefix!r}: {lines}"
        time.sleep(0.05)


def relay(url: str, tokens: Path, cwd: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "taskgate", "connect", url],
        env=headless_env(tokens),
        cwd=cwd,
    )


def stored(tokens: Path, url: str) -> dict[str, object]:
    entry = json.loads(tokens.read_text())[url]
    assert isinstance(entry, dict)
    return dict(entry["tokens"])


async def test_a_headless_login_over_a_forwarded_port_then_a_relay_that_refreshes(
    oauth_stack: OAuthStack, tmp_path: Path
) -> None:
    agent = oauth_stack.agent()
    tokens = tmp_path / "config" / "tokens.json"
    port = free_port()

    login = taskgate_connect(
        "--login", "--callback-port", str(port), oauth_stack.mcp_url,
        env=headless_env(tokens), cwd=tmp_path,
    )  # fmt: skip
    lines: list[str] = []
    reader = collect(login.stderr, lines)
    try:
        login_url = wait_for_line(lines, LOGIN_LINE, login).removeprefix(LOGIN_LINE)
        assert login_url.startswith(f"{oauth_stack.backend_url}/authorize?")
        assert f"127.0.0.1%3A{port}%2Fcallback" in login_url  # the port an SSH user forwards

        with chromium() as browser:  # the person's browser, at the tunnel's other end
            browser.get(login_url)
            assert "Log in" in browser.title
            browser.find_element(By.NAME, "email").send_keys(agent.email)
            browser.find_element(By.NAME, "password").send_keys(agent.password)
            browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            assert login.wait(120) == 0, lines
            assert "logged in" in browser.page_source
    finally:
        if login.poll() is None:
            login.kill()
            login.wait(10)
    reader.join(10)
    assert lines[-1] == (
        f"taskgate connect: logged in; tokens for {oauth_stack.mcp_url} stored in {tokens}"
    )
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    first = stored(tokens, oauth_stack.mcp_url)
    assert first["refresh_token"]

    # The relay says it is alive before any client message, with no browser and no login.
    started = taskgate_connect(oauth_stack.mcp_url, env=headless_env(tokens), cwd=tmp_path)
    said: list[str] = []
    collect(started.stderr, said)
    try:
        line = wait_for_line(said, "taskgate connect: relaying stdio to ", started)
        assert line == (
            f"taskgate connect: relaying stdio to {oauth_stack.mcp_url} with the tokens in {tokens}"
        )
    finally:
        started.kill()
        started.wait(10)

    async with Client(relay(oauth_stack.mcp_url, tokens, tmp_path)) as client:
        created = await client.call_tool("create_task", {"title": "after a headless login"})
        assert not created.is_error, created.content
        # The access token expires; the relay refreshes it and the next call goes through.
        await anyio.sleep(ACCESS_TTL_SECONDS + 1)
        listed = await client.call_tool("list_tasks", {})
    assert not listed.is_error, listed.content
    assert listed.structured_content is not None
    assert [t["title"] for t in listed.structured_content["tasks"]] == ["after a headless login"]
    assert stored(tokens, oauth_stack.mcp_url)["refresh_token"] != first["refresh_token"]


async def test_without_tokens_initialize_is_answered_at_once_with_what_to_run(
    oauth_stack: OAuthStack, tmp_path: Path
) -> None:
    tokens = tmp_path / "none" / "tokens.json"
    with anyio.fail_after(NO_LOGIN_WAIT), pytest.raises(BaseException) as refused:
        async with Client(relay(oauth_stack.mcp_url, tokens, tmp_path)):
            pass
    (error,) = {str(e) for e in mcp_errors(refused.value)}
    assert error == (
        f"taskgate connect: not logged in to {oauth_stack.mcp_url}: run "
        f"`taskgate connect --login {oauth_stack.mcp_url}` in a terminal"
    )
    assert not tokens.exists()


def mcp_errors(raised: BaseException) -> list[MCPError]:
    """The MCP errors in what the client raised (its task group wraps them in groups)."""
    if isinstance(raised, MCPError):
        return [raised]
    if isinstance(raised, BaseExceptionGroup):
        return [e for inner in raised.exceptions for e in mcp_errors(inner)]
    return []
