"""`taskgate connect` as a real stdio server process, relaying to a real gateway over streamable
HTTP with MCP_TOKEN: the client sees the gateway's tools, results and error envelopes as they are,
with no database URL or JWT secret in the bridge's environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from taskgate.devstack import Stack
from tests.support.agents import sign_up_for_mcp
from tests.support.mcp_results import ok

# The bridge's environment carries no database or signing secrets: only what a client has.
SERVER_ONLY = {"DATABASE_URL", "READ_DATABASE_URL", "JWT_SECRET", "ADMIN_TOKEN", "MCP_TOKEN"}


def client_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in SERVER_ONLY}, **extra}


def bridge(args: list[str], cwd: Path, **env: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "taskgate", "connect", *args],
        env=client_env(**env),
        cwd=cwd,
    )


async def test_the_bridge_relays_tools_results_and_errors_with_mcp_token(
    stack: Stack, tmp_path: Path
) -> None:
    user_id, token = sign_up_for_mcp(stack.backend_url)
    async with Client(bridge([stack.mcp_url], tmp_path, MCP_TOKEN=token)) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        created = await client.call_tool("create_task", {"title": "through the bridge"})
        listed = await client.call_tool("list_tasks", {})
        missing = await client.call_tool("get_task", {"task_id": 2**40})
    assert {"create_task", "list_tasks", "get_task", "get_user_stats"} <= tools
    assert ok(created)["user_id"] == user_id
    # The gateway's read-your-writes holds through the relay.
    assert [t["id"] for t in ok(listed)["tasks"]] == [ok(created)["id"]]
    assert missing.is_error
    envelope = json.loads(missing.content[0].text)  # type: ignore[union-attr]
    assert envelope["status"] == "error" and envelope["error_code"] == "not_found"


async def test_with_no_url_the_bridge_reads_the_dev_settings_file(
    stack: Stack, tmp_path: Path
) -> None:
    user_id, token = sign_up_for_mcp(stack.backend_url)
    settings_dir = tmp_path / ".taskgate"
    settings_dir.mkdir()
    (settings_dir / "dev.env").write_text(
        f"MCP_URL={stack.mcp_url}\nMCP_TOKEN={token}\nDEMO_EMAIL=demo@example.com\n"
    )
    async with Client(bridge([], tmp_path)) as client:
        stats = await client.call_tool("get_user_stats", {})
        created = await client.call_tool("create_task", {"title": "from dev.env"})
    assert not stats.is_error, stats.content
    assert created.structured_content is not None
    assert created.structured_content["user_id"] == user_id


async def test_a_refused_token_fails_the_client_quickly_instead_of_hanging(
    stack: Stack, tmp_path: Path
) -> None:
    with anyio.fail_after(60), pytest.raises(Exception) as refused:
        async with Client(bridge([stack.mcp_url], tmp_path, MCP_TOKEN="not-a-token")) as client:
            await client.call_tool("get_user_stats", {})
    assert "error" in repr(refused.value).lower()


def test_with_no_url_and_no_dev_settings_the_bridge_says_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "taskgate", "connect"],
        env=client_env(),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and ".taskgate/dev.env" in lines[0] and "taskgate dev" in lines[0]
