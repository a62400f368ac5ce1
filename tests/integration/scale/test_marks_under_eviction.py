"""The eviction attack: a third user fills a small Redis (volatile-lru) between one user's write
through gateway 1 and their read through gateway 2. The write mark must survive it."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis

from readmodel.redis_keys import MARKS_KEY
from taskgate.pgpair import READER_ROLE, PgPair
from tests.support.agents import Agent, sign_up
from tests.support.faults import replay_paused
from tests.support.mcp_results import error_code
from tests.support.readmodel import insert_largest_tasks, wait_replayed
from tests.support.redis import RedisServer, running_redis
from tests.support.scale import mcp_session, running_gateways

log = logging.getLogger(__name__)
ROUNDS = 5
STATUSES = ("all", "pending", "completed")


@pytest.fixture
def small_redis() -> Any:
    """A Redis of its own with little memory, evicting keys that have an expiry (as shipped)."""
    with running_redis() as server:
        client = redis.Redis(host="127.0.0.1", port=server.port)
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", str(used + 1024 * 1024))
        client.config_set("maxmemory-policy", "volatile-lru")
        client.close()
        yield server


async def test_a_write_mark_survives_eviction_by_another_users_big_reads(
    pair2: PgPair, backend_url: str, small_redis: RedisServer
) -> None:
    writer, flooder = sign_up(backend_url), sign_up(backend_url)
    wait_replayed(pair2, insert_largest_tasks(pair2, flooder.id), replica=0)
    env = {
        "READ_DATABASE_URLS": pair2.url(READER_ROLE, replica=0),
        "CACHE_URL": small_redis.url,
        "CACHE_TTL": "300",
        "RYW_WAIT_TIMEOUT": "0.3",
    }
    stale = refused = 0
    with running_gateways(pair2, backend_url, env) as (first, second):
        for _ in range(ROUNDS):
            outcome = await _one_round(pair2, first, second, writer, flooder)
            stale += outcome == "stale"
            refused += outcome == "refused"
    client = redis.Redis(host="127.0.0.1", port=small_redis.port)
    try:
        evicted = int(client.info("stats")["evicted_keys"])
        assert client.ttl(MARKS_KEY) == -1
        assert client.hexists(MARKS_KEY, str(writer.id))
    finally:
        client.close()
    log.warning("eviction attack: %d rounds, %d keys evicted, %d stale", ROUNDS, evicted, stale)
    assert evicted > 0  # the attack did push entries out
    assert stale == 0
    assert refused == ROUNDS  # while the replica cannot have the write, the read says so


async def _one_round(pair: PgPair, first: str, second: str, writer: Agent, flooder: Agent) -> str:
    async with (
        mcp_session(first, writer.token) as writer_one,
        mcp_session(second, writer.token) as writer_two,
        mcp_session(first, flooder.token) as flood_one,
        mcp_session(second, flooder.token) as flood_two,
    ):
        before = await writer_two.call_tool("list_tasks", {})  # cached in Redis
        assert not before.is_error
        with replay_paused(pair, replica=0):
            created = await writer_one.call_tool("create_task", {"title": "must be seen"})
            assert not created.is_error, created.content
            task_id = created.structured_content["id"]
            for i in range(40):
                flood = flood_one if i % 2 else flood_two
                # Pages of 51 to 90 tasks: each under CACHE_MAX_ENTRY_BYTES, so all are cached.
                page = await flood.call_tool(
                    "list_tasks", {"limit": 90 - i, "status": STATUSES[i % 3]}
                )
                assert not page.is_error, page.content
            listed = await writer_two.call_tool("list_tasks", {})
            got = await writer_two.call_tool("get_task", {"task_id": task_id})
        outcome = _judge(listed, got, task_id)
        # Once replayed, the same read through the other gateway shows the write.
        after = await writer_two.call_tool("get_task", {"task_id": task_id})
        assert not after.is_error, after.content
        return outcome


def _judge(listed: Any, got: Any, task_id: int) -> str:
    """'stale' when either read answered without the acknowledged write."""
    if not listed.is_error and task_id not in [t["id"] for t in listed.structured_content["tasks"]]:
        return "stale"
    if got.is_error and error_code(got) == "not_found":
        return "stale"
    if listed.is_error and got.is_error:
        assert error_code(listed) == error_code(got) == "replica_unavailable"
        return "refused"
    return "seen"
