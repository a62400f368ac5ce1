"""One write and one read through the whole hybrid path, on real processes and sockets."""

from __future__ import annotations

import json

import httpx

from taskgate.devstack import Stack
from tests.support.agents import sign_up_for_mcp
from tests.support.mcp_client import mcp_session


async def test_agent_creates_a_task_and_lists_it_from_the_replica(stack: Stack) -> None:
    _, token = sign_up_for_mcp(stack.backend_url)
    async with mcp_session(stack.mcp_url, token) as client:
        created = await client.call_tool("create_task", {"title": "  write the skeleton  "})
        assert not created.is_error, created.content
        task = created.structured_content
        assert task is not None
        assert task["title"] == "write the skeleton"  # the backend's rule trimmed it

        listed = await client.call_tool("list_tasks", {})
        assert not listed.is_error, listed.content
        page = listed.structured_content
        assert page is not None
        assert [t["id"] for t in page["tasks"]] == [task["id"]]

    # The read came from the replica: the read model holds connections there, not on the primary.
    reader_on_replica = stack.pair.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'taskgate-readmodel'",
        replica=True,
        database="postgres",
    )
    reader_on_primary = stack.pair.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'taskgate-readmodel'",
        database="postgres",
    )
    assert int(reader_on_replica) >= 1
    assert int(reader_on_primary) == 0


async def test_gateway_refuses_a_call_without_a_bearer_token(stack: Stack) -> None:
    async with httpx.AsyncClient() as http:
        reply = await http.post(
            stack.mcp_url,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream"},
        )
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")


async def test_bad_arguments_get_a_validation_envelope(stack: Stack) -> None:
    _, token = sign_up_for_mcp(stack.backend_url)
    async with mcp_session(stack.mcp_url, token) as client:
        result = await client.call_tool("create_task", {"title": "x" * 201})
    assert result.is_error
    envelope = json.loads(result.content[0].text)  # type: ignore[union-attr]
    assert envelope["status"] == "error"
    assert envelope["error_code"] == "validation_error"
    assert envelope["details"]["errors"][0]["field"] == "title"
