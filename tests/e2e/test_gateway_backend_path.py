"""The write path on real processes: the agent's token stays at the gateway (the backend gets a
backend token exchanged for it), a lost response is
retried without a duplicate, and two agents cannot see or touch each other's tasks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import jwt
import pytest

from taskgate.devstack import Component, Stack, spawn_component, wait_healthy
from tests.e2e.gateway_proxy import RecordingProxy
from tests.support.agents import sign_up_for_mcp
from tests.support.mcp_client import mcp_session
from tests.support.mcp_results import error_code, ok
from tests.support.ports import free_port


@dataclass
class ProxiedGateway:
    mcp_url: str
    proxy: RecordingProxy


@pytest.fixture(scope="module")
async def proxied(stack: Stack) -> AsyncIterator[ProxiedGateway]:
    """A second gateway process whose backend traffic goes through a RecordingProxy."""
    proxy = RecordingProxy(upstream_port=int(stack.backend_url.rsplit(":", 1)[1]))
    await proxy.start()
    port = free_port()
    env = {
        **stack.env,
        "FASTAPI_BASE_URL": f"http://127.0.0.1:{proxy.port}",
        # Short enough for a held response to time out soon, long for a loaded test machine.
        "BACKEND_READ_TIMEOUT": "4",
    }
    gateway: Component = spawn_component(
        "proxied-gateway",
        ["gateway", "--transport", "http", "--port", str(port)],
        env,
        f"http://127.0.0.1:{port}/healthz",
    )
    try:
        await asyncio.to_thread(wait_healthy, gateway)
        yield ProxiedGateway(f"http://127.0.0.1:{port}/mcp", proxy)
    finally:
        await asyncio.to_thread(gateway.stop)
        await proxy.stop()


async def test_the_backend_gets_an_exchanged_backend_token_never_the_agents_own(
    stack: Stack, proxied: ProxiedGateway
) -> None:
    _, token = sign_up_for_mcp(stack.backend_url)
    before = len(proxied.proxy.heads)
    async with mcp_session(proxied.mcp_url, token) as client:
        task = ok(await client.call_tool("create_task", {"title": "mine"}))
        ok(await client.call_tool("complete_task", {"task_id": task["id"]}))
    sent = proxied.proxy.heads[before:]
    # One RFC 8693 exchange (as the gateway's client), then both calls with its result.
    assert [(h.method, h.path) for h in sent] == [
        ("POST", "/token"),
        ("POST", "/api/v1/tasks"),
        ("POST", f"/api/v1/tasks/{task['id']}/complete"),
    ]
    exchange, *calls = sent
    assert exchange.headers["authorization"].startswith("Basic ")
    used = {h.headers["authorization"] for h in calls}
    assert len(used) == 1 and used != {f"Bearer {token}"}
    backend_token = used.pop().removeprefix("Bearer ")
    claims = jwt.decode(backend_token, options={"verify_signature": False})
    assert claims["aud"] == "taskgate-api" and claims["client_id"] == "taskgate-gateway"
    assert all(token not in value for h in sent for value in h.headers.values())
    request_ids = [h.headers["x-request-id"] for h in calls]
    assert len(set(request_ids)) == 2  # one id per tool call


async def test_the_callers_request_id_travels_to_the_backend(
    stack: Stack, proxied: ProxiedGateway
) -> None:
    _, token = sign_up_for_mcp(stack.backend_url)
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "create_task", "arguments": {"title": "traced"}},
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {token}",
        "X-Request-ID": "agent-trace-0042",
    }
    before = len(proxied.proxy.heads)
    async with httpx.AsyncClient(timeout=30) as http:
        reply = await http.post(proxied.mcp_url, json=call, headers=headers)
    assert reply.status_code == 200, reply.text
    assert not reply.json()["result"].get("isError"), reply.text
    sent = proxied.proxy.heads[before:]
    # The token exchange that the call needed carries the caller's id too.
    assert [(h.path, h.headers["x-request-id"]) for h in sent] == [
        ("/token", "agent-trace-0042"),
        ("/api/v1/tasks", "agent-trace-0042"),
    ]


# How the first response fails to come back: dropped with the connection, or held past the
# gateway's read timeout.
LOST_RESPONSES = {"lost": "drop_next", "timed out": "hold_next"}


@pytest.mark.parametrize("fault", sorted(LOST_RESPONSES))
async def test_a_create_whose_response_never_comes_is_retried_without_a_duplicate(
    stack: Stack, proxied: ProxiedGateway, fault: str
) -> None:
    _, token = sign_up_for_mcp(stack.backend_url)
    setattr(proxied.proxy, LOST_RESPONSES[fault], ("POST", "/api/v1/tasks"))
    before = len(proxied.proxy.sent("POST", "/api/v1/tasks"))
    async with mcp_session(proxied.mcp_url, token) as client:
        created = ok(await client.call_tool("create_task", {"title": f"{fault} but once"}))
        listed = ok(await client.call_tool("list_tasks", {}))
        stats = ok(await client.call_tool("get_user_stats", {}))

    # The first response really was lost.
    assert getattr(proxied.proxy, LOST_RESPONSES[fault]) is None
    attempts = proxied.proxy.sent("POST", "/api/v1/tasks")[before:]
    assert len(attempts) == 2
    assert attempts[0].headers["idempotency-key"] == attempts[1].headers["idempotency-key"]
    assert attempts[0].headers["x-request-id"] == attempts[1].headers["x-request-id"]
    assert [t["id"] for t in listed["tasks"]] == [created["id"]]
    assert stats["total"] == 1


async def test_two_agents_cannot_see_or_touch_each_others_tasks(stack: Stack) -> None:
    alice_id, alice = sign_up_for_mcp(stack.backend_url)
    bob_id, bob = sign_up_for_mcp(stack.backend_url)
    async with mcp_session(stack.mcp_url, alice) as client:
        task = ok(await client.call_tool("create_task", {"title": "alice's secret"}))
    assert task["user_id"] == alice_id

    async with mcp_session(stack.mcp_url, bob) as client:
        assert ok(await client.call_tool("list_tasks", {}))["tasks"] == []
        assert ok(await client.call_tool("get_user_stats", {}))["total"] == 0
        for tool, arguments in [
            ("get_task", {"task_id": task["id"]}),
            ("update_task", {"task_id": task["id"], "title": "bob was here"}),
            ("complete_task", {"task_id": task["id"]}),
            ("delete_task", {"task_id": task["id"]}),
        ]:
            assert error_code(await client.call_tool(tool, arguments)) == "not_found", tool
        mine = ok(await client.call_tool("create_task", {"title": "bob's"}))
    assert mine["user_id"] == bob_id

    async with mcp_session(stack.mcp_url, alice) as client:
        still = ok(await client.call_tool("get_task", {"task_id": task["id"]}))
        listed = ok(await client.call_tool("list_tasks", {}))
    assert still == task  # untouched: same title, not completed, same updated_at
    assert [t["id"] for t in listed["tasks"]] == [task["id"]]
