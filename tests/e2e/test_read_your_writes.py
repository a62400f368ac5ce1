"""Read-your-writes through real gateway processes, on the real primary and replica."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from mcp import Client

from taskgate.devstack import Stack, spawn_component, wait_healthy
from taskgate.pgpair import READER_ROLE
from tests.support.agents import sign_up_for_mcp
from tests.support.faults import replay_paused, start_replica, stop_replica
from tests.support.mcp_client import mcp_session
from tests.support.mcp_results import envelope as error_envelope
from tests.support.mcp_results import ok
from tests.support.ports import free_port
from tests.support.redis import running_redis
from tests.support.waiting import ANSWER_BOUND_SECONDS, eventually


@dataclass
class Gateways:
    """Gateway processes beside the stack's, each with settings of its own, by MCP URL."""

    patient: str  # waits up to 30 s for the replica
    fallback: str  # waits 0.2 s, then reads the primary
    strict: str  # waits 0.2 s, then answers replica_unavailable
    redis_one: str  # these two share one Redis cache
    redis_two: str


@pytest.fixture(scope="module")
def gateways(stack: Stack) -> Iterator[Gateways]:
    # Started together: each takes seconds to import, and they do not depend on each other.
    with running_redis() as redis, ExitStack() as running:
        settings = {
            "patient": {"RYW_WAIT_TIMEOUT": "30", "CACHE_TTL": "60"},
            "fallback": {
                "RYW_WAIT_TIMEOUT": "0.2",
                "READ_FALLBACK_DATABASE_URL": stack.pair.url(READER_ROLE),
            },
            "strict": {"RYW_WAIT_TIMEOUT": "0.2"},
            "redis_one": {"CACHE_URL": redis.url, "CACHE_TTL": "60"},
            "redis_two": {"CACHE_URL": redis.url, "CACHE_TTL": "60"},
        }
        urls: dict[str, str] = {}
        components = []
        for name, env in settings.items():
            port = free_port()
            component = spawn_component(
                f"gateway {name}",
                ["gateway", "--transport", "http", "--port", str(port)],
                {**stack.env, **env},
                f"http://127.0.0.1:{port}/healthz",
            )
            running.callback(component.stop)
            components.append(component)
            urls[name] = f"http://127.0.0.1:{port}/mcp"
        for component in components:
            wait_healthy(component, timeout=120)
        yield Gateways(**urls)


async def answered(client: Client, tool: str, arguments: dict[str, Any]) -> bool:
    """Whether the call now gets a result rather than an error."""
    return not (await client.call_tool(tool, arguments)).is_error


async def test_agent_sees_own_write_while_replica_is_paused(
    stack: Stack, gateways: Gateways
) -> None:
    _, token = sign_up_for_mcp(stack.backend_url)
    async with mcp_session(gateways.patient, token) as client:
        assert ok(await client.call_tool("list_tasks", {}))["tasks"] == []  # now cached
        with replay_paused(stack.pair):
            task = ok(await client.call_tool("create_task", {"title": "seen at once"}))
            read = asyncio.create_task(client.call_tool("list_tasks", {}))
            await asyncio.sleep(0.5)
            assert not read.done()  # waiting for the replica to replay the write
            stack.pair.psql("SELECT pg_wal_replay_resume()", replica=True)
            page = ok(await read)
        assert [t["id"] for t in page["tasks"]] == [task["id"]]
        assert ok(await client.call_tool("get_task", {"task_id": task["id"]}))["title"] == (
            "seen at once"
        )
        assert ok(await client.call_tool("get_user_stats", {}))["total"] == 1


async def test_agent_sees_own_write_from_the_fallback_while_replica_stays_paused(
    stack: Stack, gateways: Gateways
) -> None:
    _, token = sign_up_for_mcp(stack.backend_url)
    async with mcp_session(gateways.fallback, token) as client:
        with replay_paused(stack.pair):
            task = ok(await client.call_tool("create_task", {"title": "from the primary"}))
            page = ok(await client.call_tool("list_tasks", {"status": "pending"}))
            stats = ok(await client.call_tool("get_user_stats", {}))
        assert [t["id"] for t in page["tasks"]] == [task["id"]]
        assert stats == {"total": 1, "completed": 0, "pending": 1}


async def test_without_fallback_a_lagging_read_answers_replica_unavailable_with_the_lag(
    stack: Stack, gateways: Gateways
) -> None:
    _, token = sign_up_for_mcp(stack.backend_url)
    async with mcp_session(gateways.strict, token) as client:
        with replay_paused(stack.pair):
            ok(await client.call_tool("create_task", {"title": "not replayed yet"}))
            envelope = error_envelope(await client.call_tool("list_tasks", {}))
        assert envelope["error_code"] == "replica_unavailable"
        assert envelope["details"]["lag_bytes"] > 0
        assert "Traceback" not in json.dumps(envelope)
        # Replay resumed: the same read now shows the write.
        await eventually(lambda: answered(client, "list_tasks", {}), "list_tasks after replay")
        result = await client.call_tool("list_tasks", {})
        assert [t["title"] for t in ok(result)["tasks"]] == ["not replayed yet"]


async def test_a_write_through_one_gateway_is_read_at_once_through_another_sharing_redis(
    stack: Stack, gateways: Gateways
) -> None:
    _, token = sign_up_for_mcp(stack.backend_url)
    async with (
        mcp_session(gateways.redis_one, token) as one,
        mcp_session(gateways.redis_two, token) as two,
    ):
        assert ok(await two.call_tool("list_tasks", {}))["tasks"] == []  # cached in Redis
        assert ok(await one.call_tool("get_user_stats", {}))["total"] == 0
        assert ok(await two.call_tool("get_user_stats", {}))["total"] == 0  # one's entry
        task = ok(await one.call_tool("create_task", {"title": "written through one"}))
        page = ok(await two.call_tool("list_tasks", {}))
        stats = ok(await two.call_tool("get_user_stats", {}))
    assert [t["id"] for t in page["tasks"]] == [task["id"]]
    assert stats["total"] == 1


async def test_replica_down_reads_answer_replica_unavailable_and_writes_go_on(
    stack: Stack, gateways: Gateways
) -> None:
    _, token = sign_up_for_mcp(stack.backend_url)
    async with mcp_session(gateways.strict, token) as client:
        ok(await client.call_tool("list_tasks", {}))  # the pool holds a live connection
        try:
            stop_replica(stack.pair)
            task = ok(await client.call_tool("create_task", {"title": "written while down"}))
            async with asyncio.timeout(ANSWER_BOUND_SECONDS):
                envelope = error_envelope(
                    await client.call_tool("get_task", {"task_id": task["id"]})
                )
            assert envelope["error_code"] == "replica_unavailable"
            assert ok(await client.call_tool("complete_task", {"task_id": task["id"]}))["completed"]
        finally:
            start_replica(stack.pair)
            stack.pair.wait_streaming()
        arguments = {"task_id": task["id"]}
        await eventually(lambda: answered(client, "get_task", arguments), "get_task after restart")
        assert ok(await client.call_tool("get_task", arguments))["completed"] is True
