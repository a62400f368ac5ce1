"""A FastAPI app taskgate has never seen (examples/notes: notes and tags, its own auth, packages
named `backend` and `shared`), served by its 59-line spec: through real gateway processes and a
real MCP client, on a primary with two streaming replicas."""

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
from tests.support.mcp_results import envelope, ok
from tests.support.notes_app import (
    NOTES_SECRET,
    NOTES_SPEC,
    agent_token,
    notes_env,
    running_notes_app,
    spawn_notes_gateway,
)
from tests.support.readmodel import wait_replayed
from tests.support.redis import running_redis


@dataclass
class Notes:
    pair: PgPair
    one: str  # these two share one Redis, and read from both replicas
    two: str
    session: str  # calls an app without the commit-position middleware, as a service session
    exchange: str  # exchanges the agent's token at the app's /token


@pytest.fixture(scope="module")
def notes() -> Iterator[Notes]:
    with ExitStack() as running:
        pair = running.enter_context(migrated_cluster("notes-", replicas=2))
        with mock.patch.dict(os.environ, notes_env(pair.database_url)):
            create_app_schema(load_spec(NOTES_SPEC), pair.database_url, READER_ROLE)
        app = running.enter_context(running_notes_app(pair.database_url))
        plain_app = running.enter_context(running_notes_app(pair.database_url, commit_lsn=False))
        redis = running.enter_context(running_redis())
        base = {
            **notes_env(pair.database_url),
            "DATABASE_URL": pair.database_url,
            "READ_DATABASE_URLS": ",".join(pair.read_database_urls),
            "JWT_SECRET": TEST_JWT_SECRET,
            "MCP_PUBLIC_URL": TEST_MCP_URL,
            "CACHE_TTL": "60",
            "RYW_WAIT_TIMEOUT": "0.5",
        }
        shared = {"FASTAPI_BASE_URL": app, "CACHE_URL": redis.url, "NOTES_GATEWAY_AUTH": "signed"}
        envs = {
            "one": {**base, **shared},
            "two": {**base, **shared},
            "session": {**base, "FASTAPI_BASE_URL": plain_app, "NOTES_GATEWAY_AUTH": "session"},
            # The app derives the gateway client's secret from its own, as taskgate's backend does.
            "exchange": {
                **base,
                "FASTAPI_BASE_URL": app,
                "NOTES_GATEWAY_AUTH": "exchange",
                "JWT_SECRET": NOTES_SECRET,
            },
        }
        urls = {}
        gateways = []
        for name, env in envs.items():  # started together: each takes seconds to import
            gateway, urls[name] = spawn_notes_gateway(env)
            running.callback(gateway.stop)
            gateways.append(gateway)
        for gateway in gateways:
            wait_healthy(gateway, timeout=120)
        yield Notes(pair, **urls)


def _user() -> int:
    return uuid.uuid4().int % 10**9 + 1


async def test_write_tools_come_from_the_apps_openapi_and_read_tools_from_its_spec(
    notes: Notes,
) -> None:
    async with mcp_session(notes.one, agent_token(_user())) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    writes = {"create_note", "edit_note", "delete_note", "tag_note", "remove_tag"}
    assert set(tools) == writes | {"list_notes", "notes_tagged", "get_note"}
    for name in writes:
        annotations = tools[name].annotations
        assert annotations is not None and annotations.read_only_hint is False, name
        assert annotations.destructive_hint is (name in ("delete_note", "remove_tag")), name
        assert annotations.idempotent_hint is (name in ("delete_note", "remove_tag")), name
        assert tools[name].input_schema["additionalProperties"] is False, name
    created = tools["create_note"].input_schema
    assert created["required"] == ["title"]
    assert created["properties"]["title"]["maxLength"] == 80
    assert "$ref" not in str(created)
    assert tools["remove_tag"].description == "Take a tag off its note."
    listing = tools["list_notes"].input_schema["properties"]
    assert set(listing) == {"limit", "cursor"}
    assert set(tools["notes_tagged"].output_schema["properties"]) == {"notes", "next_cursor"}  # type: ignore[index]


async def test_an_agent_sees_its_own_write_through_another_gateway_while_a_replica_lags(
    notes: Notes,
) -> None:
    token = agent_token(_user())
    async with mcp_session(notes.one, token) as one, mcp_session(notes.two, token) as two:
        assert ok(await two.call_tool("list_notes", {}))["notes"] == []  # cached, empty
        for lagging in (0, 1):
            with replay_paused(notes.pair, replica=lagging):
                note = ok(await one.call_tool("create_note", {"title": f"lag {lagging}"}))
                page = ok(await two.call_tool("list_notes", {}))
                assert page["notes"][0]["id"] == note["id"]
                got = ok(await two.call_tool("get_note", {"note_id": note["id"]}))
                assert got["title"] == f"lag {lagging}"


async def test_reads_are_cached_until_the_caller_writes(notes: Notes) -> None:
    user = _user()
    async with mcp_session(notes.one, agent_token(user)) as client:
        first = ok(await client.call_tool("list_notes", {}))
        # Written behind the gateway's back: no mark moves, so the cached page stays.
        lsn = notes.pair.psql(
            f"INSERT INTO notes (owner_id, title) VALUES ({user}, 'behind'); "
            "SELECT pg_current_wal_lsn()"
        ).splitlines()[-1]
        for replica in (0, 1):
            wait_replayed(notes.pair, lsn, replica=replica)
        assert ok(await client.call_tool("list_notes", {})) == first
        ok(await client.call_tool("create_note", {"title": "through"}))
        titles = [n["title"] for n in ok(await client.call_tool("list_notes", {}))["notes"]]
        assert titles == ["through", "behind"]
    # The cache hits were answered in front of the MCP SDK, as the task service's are.
    async with httpx.AsyncClient(timeout=10) as http:
        metrics = (await http.get(notes.one.removesuffix("/mcp") + "/metrics")).text
    answered = [
        line for line in metrics.splitlines()
        if line.startswith('taskgate_fast_path_answers_total{cache="hit",tool="list_notes"}')
    ]  # fmt: skip
    assert answered and float(answered[0].split()[-1]) >= 1, metrics[:2000]


async def test_another_owners_notes_and_tags_are_never_reachable(notes: Notes) -> None:
    async with (
        mcp_session(notes.one, agent_token(_user())) as owner,
        mcp_session(notes.one, agent_token(_user())) as other,
    ):
        note = ok(await owner.call_tool("create_note", {"title": "private", "body": "mine"}))
        tag = ok(await owner.call_tool("tag_note", {"note_id": note["id"], "name": "secret"}))
        tagged = ok(await owner.call_tool("notes_tagged", {"tag": "secret"}))
        assert [n["id"] for n in tagged["notes"]] == [note["id"]]

        assert ok(await other.call_tool("list_notes", {}))["notes"] == []
        assert ok(await other.call_tool("notes_tagged", {"tag": "secret"}))["notes"] == []
        missing = envelope(await other.call_tool("get_note", {"note_id": note["id"]}))
        assert missing["error_code"] == "not_found"
        edit = {"note_id": note["id"], "title": "stolen"}
        assert envelope(await other.call_tool("edit_note", edit))["error_code"] == "not_found"
        ok(await other.call_tool("remove_tag", {"tag_id": tag["id"]}))  # a no-op for them
        still = ok(await owner.call_tool("notes_tagged", {"tag": "secret"}))
        assert [n["title"] for n in still["notes"]] == ["private"]


async def test_the_apps_error_bodies_reach_the_agent_in_the_envelope(notes: Notes) -> None:
    async with mcp_session(notes.one, agent_token(_user())) as client:
        gone = envelope(await client.call_tool("edit_note", {"note_id": 10**12, "title": "x"}))
        assert (gone["error_code"], gone["message"]) == ("not_found", f"note {10**12} not found")
        note = ok(await client.call_tool("create_note", {"title": "tagged twice"}))
        ok(await client.call_tool("tag_note", {"note_id": note["id"], "name": "dup"}))
        again = envelope(await client.call_tool("tag_note", {"note_id": note["id"], "name": "dup"}))
        assert (again["error_code"], again["message"]) == (
            "conflict",
            "the note already has the tag dup",
        )
        long = envelope(await client.call_tool("create_note", {"title": "t" * 81}))
        assert long["error_code"] == "validation_error"
        assert [e["field"] for e in long["details"]["errors"]] == ["title"]
        assert "t" * 81 not in str(long)  # the caller's value is not echoed back


@pytest.mark.parametrize("mode", ["one", "session", "exchange"])
async def test_each_way_of_calling_the_app_writes_as_the_caller(notes: Notes, mode: str) -> None:
    url = {"one": notes.one, "session": notes.session, "exchange": notes.exchange}[mode]
    async with mcp_session(url, agent_token(_user())) as client:
        # The session gateway's app sends no commit position: the gateway asks for it.
        with replay_paused(notes.pair, replica=0):
            note = ok(await client.call_tool("create_note", {"title": mode}))
            assert ok(await client.call_tool("get_note", {"note_id": note["id"]}))["title"] == mode
            deleted = ok(await client.call_tool("delete_note", {"note_id": note["id"]}))
            assert deleted == {"note_id": note["id"], "deleted": True}
            gone = envelope(await client.call_tool("get_note", {"note_id": note["id"]}))
            assert gone["error_code"] == "not_found"
