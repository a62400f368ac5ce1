"""`taskgate gateway --transport stdio` as a subprocess, logged in with GATEWAY_EMAIL/PASSWORD."""

from __future__ import annotations

import os
import sys
import uuid

import httpx
from mcp import Client, StdioServerParameters

from taskgate.devstack import Stack
from tests.support.mcp_results import ok


def new_user(backend_url: str) -> tuple[int, str, str]:
    email = f"stdio-{uuid.uuid4().hex[:12]}@example.com"
    password = uuid.uuid4().hex
    with httpx.Client(base_url=backend_url, timeout=30) as http:
        created = http.post("/api/v1/users", json={"email": email, "password": password})
        created.raise_for_status()
    return int(created.json()["id"]), email, password


def stdio_gateway(stack: Stack, email: str, password: str) -> StdioServerParameters:
    env = {
        **os.environ,
        **stack.env,
        "MCP_TRANSPORT": "stdio",
        "GATEWAY_EMAIL": email,
        "GATEWAY_PASSWORD": password,
    }
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "taskgate", "gateway", "--transport", "stdio"],
        env=env,
    )


async def test_a_stdio_gateway_logs_in_and_acts_as_its_configured_user(stack: Stack) -> None:
    user_id, email, password = new_user(stack.backend_url)
    async with Client(stdio_gateway(stack, email, password)) as client:
        created = await client.call_tool("create_task", {"title": "from claude desktop"})
        listed = await client.call_tool("list_tasks", {})
    assert ok(created)["user_id"] == user_id
    assert [t["id"] for t in ok(listed)["tasks"]] == [ok(created)["id"]]


async def test_a_stdio_gateway_with_a_wrong_password_answers_unauthorized(stack: Stack) -> None:
    _, email, _ = new_user(stack.backend_url)
    async with Client(stdio_gateway(stack, email, "wrong-password-123")) as client:
        result = await client.call_tool("get_user_stats", {})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert '"error_code":"unauthorized"' in text.replace(" ", "")
    assert "wrong-password-123" not in text
