"""The gateway's HTTP edge on a real process: bearer verification, the 401 that points at the
protected resource metadata, and DNS-rebinding protection."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest

from taskgate.devstack import Stack
from tests.support.agents import sign_up_for_mcp
from tests.support.config import TEST_MCP_URL
from tests.support.mcp_client import mcp_session

LIST_TOOLS = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
ACCEPT = {"Accept": "application/json, text/event-stream"}


def forged(stack: Stack, secret: str | None = None, **changes: Any) -> str:
    """A token like the backend's, with some claims (or the signing secret) changed."""
    now = int(time.time())
    claims = {"sub": "1", "iat": now, "exp": now + 600, "iss": "taskgate", "aud": TEST_MCP_URL}
    return jwt.encode({**claims, **changes}, secret or stack.env["JWT_SECRET"], algorithm="HS256")


async def post(stack: Stack, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(stack.mcp_url, json=LIST_TOOLS, headers={**ACCEPT, **headers})


async def test_a_401_points_at_the_protected_resource_metadata(stack: Stack) -> None:
    reply = await post(stack, {})
    assert reply.status_code == 401
    challenge = reply.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    match = re.search(r'resource_metadata="([^"]+)"', challenge)
    assert match is not None, challenge
    # It names MCP_PUBLIC_URL (a made-up host in these tests), so ask this gateway for its path.
    where = urlsplit(match.group(1))
    assert where.netloc == urlsplit(TEST_MCP_URL).netloc
    async with httpx.AsyncClient(timeout=30) as http:
        metadata = await http.get(stack.mcp_url.removesuffix("/mcp") + where.path)
    assert metadata.status_code == 200
    assert metadata.json()["resource"].rstrip("/") == TEST_MCP_URL
    # The backend is the authorization server (tests/oauth/ follows the whole flow).
    assert [url.rstrip("/") for url in metadata.json()["authorization_servers"]] == [
        stack.backend_url
    ]


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": int(time.time()) - 60},
        {"aud": "someone-else"},
        {"aud": "taskgate-api"},
        {"iss": "not-taskgate"},
        {"secret": "a-different-secret-" + "z" * 32},
    ],
    ids=["expired", "wrong-audience", "backend-audience", "wrong-issuer", "wrong-signature"],
)
async def test_a_token_the_gateway_cannot_verify_is_refused(
    stack: Stack, claims: dict[str, Any]
) -> None:
    reply = await post(stack, {"Authorization": f"Bearer {forged(stack, **claims)}"})
    assert reply.status_code == 401
    assert 'error="invalid_token"' in reply.headers["WWW-Authenticate"]


async def test_a_valid_token_is_served(stack: Stack) -> None:
    _, token = sign_up_for_mcp(stack.backend_url)
    async with mcp_session(stack.mcp_url, token) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    assert "create_task" in names


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "attacker.example"}, 421),
        ({"Host": "attacker.example:8001"}, 421),
        ({"Origin": "http://attacker.example"}, 403),
        ({"Origin": "https://127.0.0.1.attacker.example"}, 403),
    ],
)
async def test_dns_rebinding_is_refused(stack: Stack, headers: dict[str, str], status: int) -> None:
    _, token = sign_up_for_mcp(stack.backend_url)
    reply = await post(stack, {"Authorization": f"Bearer {token}", **headers})
    assert reply.status_code == status


async def test_a_local_origin_is_allowed(stack: Stack) -> None:
    _, token = sign_up_for_mcp(stack.backend_url)
    origin = stack.mcp_url.removesuffix("/mcp")
    reply = await post(stack, {"Authorization": f"Bearer {token}", "Origin": origin})
    assert reply.status_code == 200, reply.text


async def test_stateless_mode_answers_a_call_without_any_session(stack: Stack) -> None:
    """Behind a load balancer any gateway may get any request: no initialize, no session id."""
    _, token = sign_up_for_mcp(stack.backend_url)
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "get_user_stats", "arguments": {}},
    }
    async with httpx.AsyncClient(timeout=30) as http:
        reply = await http.post(
            stack.mcp_url, json=call, headers={**ACCEPT, "Authorization": f"Bearer {token}"}
        )
    assert reply.status_code == 200, reply.text
    assert "mcp-session-id" not in reply.headers
    result = reply.json()["result"]
    assert result["structuredContent"] == {"total": 0, "completed": 0, "pending": 0}
