"""An app whose user ids are UUIDs, as fastapi/full-stack-fastapi-template's are (UUID owner
columns and primary keys, the user's UUID in the JWT's `sub`), served by its spec through real
gateway processes and a real MCP client, on a primary with two streaming replicas."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from unittest import mock

import httpx
import pytest

from shared.spec_loader import load_spec
from taskgate.app_schema import create_app_schema
from taskgate.devstack import wait_healthy
from taskgate.pgpair import READER_ROLE, PgPair
from tests.support.clusters import migrated_cluster
from tests.support.config import TEST_JWT_SECRET, TEST_MCP_URL
from tests.support.faults import replay_paused
from tests.support.mcp_client import mcp_session
from tests.support.mcp_results import envelope, envelope_of, ok
from tests.support.readmodel import wait_replayed
from tests.support.redis import running_redis
from tests.support.uuid_items.processes import (
    ITEMS_SECRET,
    ITEMS_SPEC,
    REPO,
    agent_token,
    items_env,
    running_items_app,
    spawn_items_gateway,
)


@dataclass
class Items:
    pair: PgPair
    one: str  # these two share one Redis: cache and read marks
    two: str
    session: str  # calls the app as a service session, naming the caller in a header
    exchange: str  # exchanges the agent's token at the app's /token
    trusted: str  # AUTH_MODE=user_param: the caller is the `user_id` argument


@pytest.fixture(scope="module")
def items() -> Iterator[Items]:
    with ExitStack() as running:
        pair = running.enter_context(migrated_cluster("uuid-items-", replicas=2))
        with mock.patch.dict(os.environ, items_env(pair.database_url)):
            create_app_schema(load_spec(ITEMS_SPEC, str(REPO)), pair.database_url, READER_ROLE)
        app = running.enter_context(running_items_app(pair.database_url))
        redis = running.enter_context(running_redis())
        base = {
            **items_env(pair.database_url),
            "FASTAPI_BASE_URL": app,
            "READ_DATABASE_URLS": ",".join(pair.read_database_urls),
            "JWT_SECRET": TEST_JWT_SECRET,
            "MCP_PUBLIC_URL": TEST_MCP_URL,
            "CACHE_TTL": "60",
            "RYW_WAIT_TIMEOUT": "0.5",
            "PYTHONPATH": str(REPO),  # the spec's module path is the repository's
        }
        shared = {**base, "CACHE_URL": redis.url, "ITEMS_GATEWAY_AUTH": "signed"}
        envs = {
            "one": shared,
            "two": shared,
            "session": {**base, "ITEMS_GATEWAY_AUTH": "session"},
            # The app derives the gateway client's secret from its own, as taskgate's backend does.
            "exchange": {**base, "ITEMS_GATEWAY_AUTH": "exchange", "JWT_SECRET": ITEMS_SECRET},
            "trusted": {**base, "AUTH_MODE": "user_param"},
        }
        urls = {}
        gateways = []
        for name, env in envs.items():  # started together: each takes seconds to import
            gateway, urls[name] = spawn_items_gateway(env)
            running.callback(gateway.stop)
            gateways.append(gateway)
        for gateway in gateways:
            wait_healthy(gateway, timeout=120)
        yield Items(pair, **urls)


def _user() -> str:
    return str(uuid.uuid4())


async def test_reads_are_the_callers_own_and_another_owners_rows_are_unreachable(
    items: Items,
) -> None:
    owner, other = _user(), _user()
    async with (
        mcp_session(items.one, agent_token(owner)) as mine,
        mcp_session(items.one, agent_token(other)) as theirs,
    ):
        item = ok(await mine.call_tool("create_item", {"title": "private"}))
        assert uuid.UUID(item["id"])
        listed = ok(await mine.call_tool("list_items", {}))["items"]
        assert [(i["id"], i["title"]) for i in listed] == [(item["id"], "private")]
        assert ok(await mine.call_tool("count_items", {})) == {"items": 1}

        assert ok(await theirs.call_tool("list_items", {}))["items"] == []
        assert ok(await theirs.call_tool("count_items", {})) == {"items": 0}
        missing = envelope(await theirs.call_tool("get_item", {"item_id": item["id"]}))
        assert (missing["error_code"], missing["message"]) == (
            "not_found",
            f"item {item['id']} not found",
        )
        refused = envelope(await theirs.call_tool("delete_item", {"item_id": item["id"]}))
        assert refused["error_code"] == "not_found"
        got = ok(await mine.call_tool("get_item", {"item_id": item["id"]}))
        assert got["title"] == "private"

    # Rows of another owner written behind the gateway's back, in the same table: still not
    # the caller's, whatever the cache and the replica hold.
    lsn = items.pair.psql(
        f"INSERT INTO uuid_items (id, owner_id, title) VALUES ('{uuid.uuid4()}', '{other}', "
        "'theirs'); SELECT pg_current_wal_lsn()"
    ).splitlines()[-1]
    for replica in (0, 1):
        wait_replayed(items.pair, lsn, replica=replica)
    async with mcp_session(items.two, agent_token(owner)) as mine_elsewhere:
        titles = [i["title"] for i in ok(await mine_elsewhere.call_tool("list_items", {}))["items"]]
    assert titles == ["private"]


async def test_one_user_spelled_in_upper_case_is_the_same_user(items: Items) -> None:
    user = _user()
    async with mcp_session(items.one, agent_token(user)) as lower:
        ok(await lower.call_tool("create_item", {"title": "spelled"}))
    async with mcp_session(items.two, agent_token(user.upper())) as upper:
        listed = ok(await upper.call_tool("list_items", {}))["items"]
        created = ok(await upper.call_tool("create_item", {"title": "again"}))
    assert [i["title"] for i in listed] == ["spelled"]
    async with mcp_session(items.one, agent_token(user)) as lower:
        listed = ok(await lower.call_tool("list_items", {}))["items"]
    assert listed[0]["id"] == created["id"]


async def test_an_agent_sees_its_own_write_through_another_gateway_while_the_replica_lags(
    items: Items,
) -> None:
    token = agent_token(_user())
    async with mcp_session(items.one, token) as one, mcp_session(items.two, token) as two:
        assert ok(await two.call_tool("list_items", {}))["items"] == []  # cached, empty
        made: list[str] = []
        for lagging in (0, 1):  # the other replica, once it has replayed the write, answers
            with replay_paused(items.pair, replica=lagging):
                item = ok(await one.call_tool("create_item", {"title": f"lag {lagging}"}))
                made.insert(0, item["id"])
                page = ok(await two.call_tool("list_items", {}))
                assert [i["id"] for i in page["items"]] == made
                got = ok(await two.call_tool("get_item", {"item_id": item["id"]}))
                assert got["title"] == f"lag {lagging}"


async def test_pages_follow_cursors_over_uuid_keys_and_cache_hits_take_the_fast_path(
    items: Items,
) -> None:
    user = _user()
    async with mcp_session(items.one, agent_token(user)) as client:
        made = [
            ok(await client.call_tool("create_item", {"title": f"t{n}"}))["id"] for n in range(5)
        ]
        seen: list[str] = []
        cursor = None
        for _ in range(5):
            arguments = {"limit": 2} if cursor is None else {"limit": 2, "cursor": cursor}
            page = ok(await client.call_tool("list_items", arguments))
            seen += [i["id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == made[::-1]
        again = ok(await client.call_tool("list_items", {"limit": 2}))  # a hit
        assert [i["id"] for i in again["items"]] == seen[:2]
        for _ in range(2):  # a miss, then a hit: a UUID argument does not keep it off the path
            got = ok(await client.call_tool("get_item", {"item_id": made[0]}))
            assert (got["id"], got["title"]) == (made[0], "t0")
    async with httpx.AsyncClient(timeout=10) as http:
        metrics = (await http.get(items.one.removesuffix("/mcp") + "/metrics")).text
    for tool in ("list_items", "get_item"):
        hits = [
            line for line in metrics.splitlines()
            if line.startswith(f'taskgate_fast_path_answers_total{{cache="hit",tool="{tool}"}}')
        ]  # fmt: skip
        assert hits and float(hits[0].split()[-1]) >= 1, (tool, metrics[:2000])
    assert not any(s in metrics for s in [user, *seen]), "a metric names a user or an item"


@pytest.mark.parametrize(
    "sub",
    [
        "42",
        "not-a-uuid",
        "{0b7c5b9e-8f1a-4c3d-9e2f-1a2b3c4d5e6f}",
        "0b7c5b9e8f1a4c3d9e2f1a2b3c4d5e6f",
        "urn:uuid:0b7c5b9e-8f1a-4c3d-9e2f-1a2b3c4d5e6f",
        " 0b7c5b9e-8f1a-4c3d-9e2f-1a2b3c4d5e6f",
    ],
)
async def test_a_token_whose_sub_is_not_a_uuid_is_refused_as_an_unverifiable_token(
    items: Items, sub: str
) -> None:
    params = {"name": "list_items", "arguments": {}}
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    async with httpx.AsyncClient(timeout=30) as http:
        reply = await http.post(
            items.one,
            json=call,
            headers={
                "Accept": "application/json, text/event-stream",
                "Authorization": f"Bearer {agent_token(sub)}",
            },
        )
    # As a bad integer sub is refused by an integer app's verifier today.
    assert reply.status_code == 401
    assert 'error="invalid_token"' in reply.headers["WWW-Authenticate"]


@pytest.mark.parametrize("mode", ["session", "exchange", "trusted"])
async def test_each_way_of_calling_the_app_writes_as_the_caller(items: Items, mode: str) -> None:
    user = _user()
    url = {"session": items.session, "exchange": items.exchange, "trusted": items.trusted}[mode]
    trusted = mode == "trusted"
    me = {"user_id": user.upper()} if trusted else {}
    async with mcp_session(url, None if trusted else agent_token(user)) as client:
        item = ok(await client.call_tool("create_item", {**me, "title": mode}))
        got = ok(await client.call_tool("get_item", {**me, "item_id": item["id"]}))
        assert got["title"] == mode
    # Written as that user: the app's own read of its owner column, through another gateway.
    async with mcp_session(items.one, agent_token(user)) as client:
        assert [i["title"] for i in ok(await client.call_tool("list_items", {}))["items"]] == [mode]


async def test_trusted_mode_takes_a_uuid_user_id_and_refuses_anything_else(items: Items) -> None:
    async with mcp_session(items.trusted, None) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        for name in ("list_items", "get_item", "count_items", "create_item", "delete_item"):
            schema = tools[name].input_schema
            assert schema["properties"]["user_id"]["type"] == "string", name
            assert schema["properties"]["user_id"]["format"] == "uuid", name
            assert "user_id" in schema["required"], name
        for bad in (7, "7", "not-a-uuid", "0b7c5b9e8f1a4c3d9e2f1a2b3c4d5e6f", None):
            refused = envelope_of(await client.call_tool("count_items", {"user_id": bad}))
            assert refused["error_code"] == "validation_error", bad
            assert refused["message"] == "user_id must be a UUID string", bad
            assert refused["details"]["errors"][0]["field"] == "user_id", bad
        missing = envelope_of(await client.call_tool("count_items", {}))
        assert (missing["error_code"], missing["message"]) == (
            "validation_error",
            "user_id is required",
        )
