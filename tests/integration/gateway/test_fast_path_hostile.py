"""The fast path under a hostile tenant: rate limits, other users' data, writes seen at once,
cache flushes and TTL changes, and lost marks. (The memo's bound is a unit test's:
tests/unit/gateway/test_encoded_results.py.)"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import redis

from shared.settings import Settings
from shared.tokens import ALGORITHM
from taskgate.pgpair import PgPair
from tests.support.agents import Agent, sign_up
from tests.support.config import TEST_MCP_URL
from tests.support.fast_path import (
    MODERN,
    NO_LIMIT,
    Corpus,
    answered,
    comparable,
    metric,
    scrape,
)
from tests.support.processes import running_gateway
from tests.support.raw_http import RawReply, send_raw
from tests.support.readmodel import insert_tasks, wait_replayed
from tests.support.redis import RedisServer, running_redis

ADMIN_TOKEN = "admin-Hq4vT9zL2xWp7KmR3bN8cJ5dF1sG6yA0"  # random: the weak-secret guard


async def call(url: str, agent: Agent, tool: str, arguments: dict[str, Any], **kw: Any) -> Any:
    c = Corpus(agent.token)
    c.call(tool, tool, arguments, **kw)
    reply = await send_raw(url, "POST", c.cases[0].headers, c.cases[0].body)
    assert reply.status == 200, reply
    return reply.json()["result"]


def titles(result: dict[str, Any]) -> list[str]:
    assert not result.get("isError"), result
    return [t["title"] for t in result["structuredContent"]["tasks"]]


def without_retry_after(reply: RawReply) -> Any:
    """The reply, with the refusal's wait (which depends on when it was asked) left out."""
    message = reply.json()
    result = message.get("result", {})
    if result.get("isError"):
        envelope = json.loads(result["content"][0]["text"])
        envelope["details"].pop("retry_after_seconds", None)
        envelope.pop("message")
        result["content"][0]["text"] = envelope
    return reply.status, reply.header("content-type"), message


async def test_a_burst_over_the_limit_is_refused_as_the_sdk_refuses_it(
    settings: Settings, backend_url: str
) -> None:
    agent = sign_up(backend_url)
    c = Corpus(agent.token)
    for version in (None, MODERN):
        c.call(f"page at {version}", "list_tasks", {"limit": 2}, version=version)
    # Four calls' burst, refilled too slowly to matter here: calls 1-4 pass, 5-8 are refused.
    env = {"CACHE_TTL": "600", "RATE_LIMIT_PER_USER": "0.001", "RATE_LIMIT_BURST": "4"}
    with (
        running_gateway(settings, backend_url, {**env, "MCP_FAST_PATH": "true"}) as fast,
        running_gateway(settings, backend_url, {**env, "MCP_FAST_PATH": "false"}) as sdk,
    ):
        replies = {}
        for url in (fast, sdk):
            replies[url] = [
                without_retry_after(await send_raw(url, "POST", case.headers, case.body))
                for case in c.cases * 4
            ]
        assert replies[fast] == replies[sdk]
        refused = [r[2]["result"].get("isError", False) for r in replies[fast]]
        assert refused == [False] * 4 + [True] * 4
        codes = {r[2]["result"]["content"][0]["text"]["error_code"] for r in replies[fast][4:]}
        assert codes == {"rate_limited"}
        scraped = {url: await scrape(url) for url in (fast, sdk)}
        # Both eras share one cache entry: one miss, then three hits passed and four refused,
        # each answered in front of the SDK.
        assert answered(scraped[fast], "miss") == 1
        assert answered(scraped[fast], "hit") == 7
        for name in (
            "taskgate_tool_calls_total",
            "taskgate_rate_limited_total",
            "taskgate_tool_call_duration_seconds_count",
            "taskgate_cache_hits_total",
        ):
            assert metric(scraped[fast], name) == metric(scraped[sdk], name), name


async def test_no_caller_is_answered_from_another_users_entries(
    settings: Settings, backend_url: str, pg_pair: PgPair
) -> None:
    one, two = sign_up(backend_url), sign_up(backend_url)
    wait_replayed(pg_pair, insert_tasks(pg_pair, one.id, 2, spacing=1))
    wait_replayed(pg_pair, insert_tasks(pg_pair, two.id, 3, spacing=1))
    own = {
        agent.id: pg_pair.psql(f"SELECT count(*) FROM tasks WHERE user_id = {agent.id}")
        for agent in (one, two)
    }
    # A token whose subject is spelled with leading zeros names the same user, no other.
    claims = {
        "sub": f"00{two.id}",
        "iat": int(time.time()),
        "exp": int(time.time()) + 600,
        "iss": settings.jwt_issuer,
        "aud": TEST_MCP_URL,
    }
    padded = dataclasses.replace(
        two, token=jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)
    )
    env = {"CACHE_TTL": "600", **NO_LIMIT}
    with (
        running_gateway(settings, backend_url, {**env, "MCP_FAST_PATH": "true"}) as fast,
        running_gateway(settings, backend_url, {**env, "MCP_FAST_PATH": "false"}) as sdk,
    ):
        for _ in range(2):  # a miss, then hits, interleaved between the users
            for agent in (one, two, padded):
                for tool in ("list_tasks", "get_user_stats"):
                    got = await call(fast, agent, tool, {})
                    assert got == await call(sdk, agent, tool, {}), (agent.id, tool)
                    content = got["structuredContent"]
                    total = content["total"] if tool == "get_user_stats" else len(content["tasks"])
                    assert str(total) == own[agent.id], (agent.id, tool, got)
        theirs = int(pg_pair.psql(f"SELECT min(id) FROM tasks WHERE user_id = {one.id}"))
        for url in (fast, sdk):
            refused = await call(url, two, "get_task", {"task_id": theirs})
            assert json.loads(refused["content"][0]["text"])["error_code"] == "not_found"
        # Misses: each user's first list and stats, and the other user's task; the padded
        # subject's were hits already.
        assert answered(await scrape(fast), "hit") == 8
        assert answered(await scrape(fast), "miss") == 5


async def test_flush_and_ttl_changes_end_the_fast_paths_answers_at_once(
    settings: Settings, backend_url: str, pg_pair: PgPair
) -> None:
    """A reply encoded once must not outlive its cache entry: after an admin flush, or a TTL of
    0, the next call reads the replica, as the SDK path does."""
    agent = sign_up(backend_url)
    wait_replayed(pg_pair, insert_tasks(pg_pair, agent.id, 1, spacing=1))
    env = {"CACHE_TTL": "600", "ADMIN_TOKEN": ADMIN_TOKEN, **NO_LIMIT, "MCP_FAST_PATH": "true"}
    admin = [("Authorization", f"Bearer {ADMIN_TOKEN}"), ("Content-Type", "application/json")]
    with running_gateway(settings, backend_url, env) as fast:
        first = titles(await call(fast, agent, "list_tasks", {}))
        assert titles(await call(fast, agent, "list_tasks", {})) == first
        assert answered(await scrape(fast), "hit") == 1
        # Written behind the gateway's back: no mark moves, so the cached page stays.
        wait_replayed(pg_pair, insert_tasks(pg_pair, agent.id, 1, spacing=1))
        assert titles(await call(fast, agent, "list_tasks", {})) == first
        flushed = await send_raw(fast, "POST", admin, b"", path="/admin/cache/flush")
        assert flushed.status == 200, flushed
        fresh = titles(await call(fast, agent, "list_tasks", {}))
        assert len(fresh) == len(first) + 1
        assert answered(await scrape(fast), "hit") == 2  # the call after the flush was a miss
        assert titles(await call(fast, agent, "list_tasks", {})) == fresh  # re-encoded
        assert answered(await scrape(fast), "hit") == 3
        ttl = await send_raw(
            fast, "PUT", admin, b'{"ttl": 0, "tool": "list_tasks"}', path="/admin/cache/ttl"
        )
        assert ttl.status == 200, ttl
        wait_replayed(pg_pair, insert_tasks(pg_pair, agent.id, 1, spacing=1))
        latest = titles(await call(fast, agent, "list_tasks", {}))
        assert len(latest) == len(fresh) + 1
        assert answered(await scrape(fast), "hit") == 3
        assert answered(await scrape(fast), "miss") == 3  # the first, after the flush, at TTL 0


async def test_writes_through_one_gateway_show_in_the_others_fast_path(
    settings: Settings, backend_url: str, pg_pair: PgPair, redis_server: RedisServer
) -> None:
    """Two gateways on one Redis: a write through one makes the other's cached replies for
    that user unreachable; with the marks lost (the hash deleted, or Redis flushed), the fast
    path serves no entry older than the primary's position."""
    agent = sign_up(backend_url)
    env = {"CACHE_URL": redis_server.url, "CACHE_TTL": "600", **NO_LIMIT, "MCP_FAST_PATH": "true"}
    store = redis.Redis.from_url(redis_server.url)
    with (
        running_gateway(settings, backend_url, env) as reading,
        running_gateway(settings, backend_url, env) as writing,
    ):

        async def read_all() -> tuple[Any, Any, Any]:
            page = await call(reading, agent, "list_tasks", {})
            stats = await call(reading, agent, "get_user_stats", {})
            tasks = page["structuredContent"]["tasks"]
            got = await call(reading, agent, "get_task", {"task_id": tasks[0]["id"]})
            return titles(page), stats["structuredContent"], got["structuredContent"]

        created = await call(writing, agent, "create_task", {"title": "first"})
        task_id = created["structuredContent"]["id"]
        await read_all()
        assert (await read_all())[0] == ["first"]  # the second round is the fast path's
        before = answered(await scrape(reading))
        assert before >= 3
        await call(writing, agent, "update_task", {"task_id": task_id, "title": "renamed"})
        page, stats, task = await read_all()
        assert page == ["renamed"] and task["title"] == "renamed"
        await call(writing, agent, "create_task", {"title": "second"})
        page, stats, _ = await read_all()
        assert page == ["second", "renamed"] and stats["total"] == 2
        await call(writing, agent, "delete_task", {"task_id": task_id})
        assert (await call(reading, agent, "list_tasks", {}))["structuredContent"]["tasks"][0][
            "title"
        ] == "second"
        assert (await call(reading, agent, "get_user_stats", {}))["structuredContent"]["total"] == 1
        deleted = await call(reading, agent, "get_task", {"task_id": task_id})
        assert json.loads(deleted["content"][0]["text"])["error_code"] == "not_found"
        losses: list[Callable[[], object]] = [
            lambda: store.delete("taskgate-ryw:marks"),
            store.flushall,
        ]
        for lose in losses:
            await read_all()  # warm
            lose()
            # Written behind both gateways' backs: only the floor, from the primary, shows it.
            wait_replayed(pg_pair, insert_tasks(pg_pair, agent.id, 1, spacing=1))
            count = int(pg_pair.psql(f"SELECT count(*) FROM tasks WHERE user_id = {agent.id}"))
            page, stats, _ = await read_all()
            assert stats["total"] == count and len(page) == count
    store.close()


async def test_with_redis_gone_the_fast_path_answers_as_the_sdk_does(
    settings: Settings, backend_url: str
) -> None:
    """Redis (cache, marks and rate limits) stops while both gateways run: no 500, and the
    replies are the SDK path's (the fast path answers no hit: every call reads through)."""
    agent = sign_up(backend_url)
    c = Corpus(agent.token)
    for version in (None, MODERN):
        c.call(f"page at {version}", "list_tasks", {"limit": 2}, version=version)
        c.call(f"stats at {version}", "get_user_stats", {}, version=version)
    with running_redis() as private:
        env = {"CACHE_URL": private.url, "CACHE_TTL": "600", **NO_LIMIT}
        with (
            running_gateway(settings, backend_url, {**env, "MCP_FAST_PATH": "true"}) as fast,
            running_gateway(settings, backend_url, {**env, "MCP_FAST_PATH": "false"}) as sdk,
        ):
            for case in c.cases * 2:  # warm, then hit
                for url in (fast, sdk):
                    await send_raw(url, "POST", case.headers, case.body)
            warm = answered(await scrape(fast), "hit")
            assert warm > 0
            private.stop()
            for case in c.cases * 2:
                one = await send_raw(fast, "POST", case.headers, case.body)
                two = await send_raw(sdk, "POST", case.headers, case.body)
                assert one.status == 200, one
                assert comparable(one, fast) == comparable(two, sdk), case.name
            assert answered(await scrape(fast), "hit") == warm
