"""Every tool through an in-process MCP client, against the real backend and the real replica."""

from __future__ import annotations

import json
from typing import Any

from mcp import Client
from pydantic import SecretStr

from gateway.server import build_server
from shared.settings import Settings
from shared.tokens import issue_token
from tests.support.agents import sign_up
from tests.support.gateways import (
    gateway_as,
    gateway_for_new_agent,
    gateway_settings,
    gateway_with,
)
from tests.support.mcp_results import envelope, ok
from tests.support.ports import free_port

WRITE_TOOLS = {"create_task", "update_task", "complete_task", "delete_task"}
READ_TOOLS = {"list_tasks", "get_task", "get_user_stats"}


async def test_every_tool_declares_its_schemas_and_annotations(
    settings: Settings, backend_url: str
) -> None:
    async with gateway_for_new_agent(settings, backend_url) as client:
        listed = await client.list_tools()
        tools = {tool.name: tool for tool in listed.tools}

    # MCP 2026-07-28 cache hints: the list is each client's own to keep for a while.
    assert (listed.ttl_ms, listed.cache_scope) == (300_000, "private")
    assert set(tools) >= WRITE_TOOLS | READ_TOOLS
    for name in WRITE_TOOLS | READ_TOOLS:
        tool = tools[name]
        assert tool.output_schema is not None, name
        assert tool.annotations is not None, name
        assert tool.description and len(tool.description) > 30, name
        assert "user_id" not in tool.input_schema.get("properties", {}), name
        assert tool.annotations.read_only_hint is (name in READ_TOOLS), name
        assert tool.annotations.title and tool.title == tool.annotations.title, name
        # The edge refuses unknown arguments, and the schema says so.
        assert tool.input_schema["additionalProperties"] is False, name
        assert bool(tool.annotations.destructive_hint) is (name == "delete_task"), name
    assert tools["create_task"].annotations.idempotent_hint is False  # type: ignore[union-attr]
    for name in ("update_task", "complete_task", "delete_task", *READ_TOOLS):
        assert tools[name].annotations.idempotent_hint is True, name  # type: ignore[union-attr]

    title = tools["create_task"].input_schema["properties"]["title"]
    assert (title["minLength"], title["maxLength"]) == (1, 200)
    list_props = tools["list_tasks"].input_schema["properties"]
    assert list_props["status"]["enum"] == ["all", "pending", "completed"]
    assert (list_props["limit"]["minimum"], list_props["limit"]["maximum"]) == (1, 200)
    assert tools["get_task"].input_schema["properties"]["task_id"]["minimum"] == 1
    assert set(tools["list_tasks"].output_schema["properties"]) == {"tasks", "next_cursor"}  # type: ignore[index]
    assert set(tools["get_user_stats"].output_schema["properties"]) == {  # type: ignore[index]
        "total",
        "completed",
        "pending",
    }


async def test_an_agent_manages_a_task_through_every_tool(
    settings: Settings, backend_url: str
) -> None:
    agent = sign_up(backend_url)
    async with gateway_as(settings, backend_url, agent) as client:
        created = ok(await client.call_tool("create_task", {"title": "draft the memo"}))
        other = ok(await client.call_tool("create_task", {"title": "b", "description": "d"}))
        assert created["user_id"] == agent.id
        assert (created["title"], created["completed"]) == ("draft the memo", False)

        fetched = ok(await client.call_tool("get_task", {"task_id": created["id"]}))
        assert fetched == created

        page = ok(await client.call_tool("list_tasks", {"limit": 1}))
        assert [t["id"] for t in page["tasks"]] == [other["id"]]  # newest first
        rest = ok(await client.call_tool("list_tasks", {"limit": 1, "cursor": page["next_cursor"]}))
        assert [t["id"] for t in rest["tasks"]] == [created["id"]]

        updated = ok(
            await client.call_tool(
                "update_task", {"task_id": created["id"], "title": "send the memo"}
            )
        )
        assert (updated["title"], updated["description"]) == ("send the memo", None)
        completed = ok(await client.call_tool("complete_task", {"task_id": created["id"]}))
        assert completed["completed"] is True
        again = ok(await client.call_tool("complete_task", {"task_id": created["id"]}))
        assert again["completed"] is True

        pending = ok(await client.call_tool("list_tasks", {"status": "pending"}))
        assert [t["id"] for t in pending["tasks"]] == [other["id"]]
        stats = ok(await client.call_tool("get_user_stats", {}))
        assert stats == {"total": 2, "completed": 1, "pending": 1}

        reopened = ok(
            await client.call_tool(
                "update_task", {"task_id": created["id"], "completed": False, "description": "x"}
            )
        )
        assert (reopened["completed"], reopened["description"]) == (False, "x")

        deleted = ok(await client.call_tool("delete_task", {"task_id": created["id"]}))
        assert deleted == {"task_id": created["id"], "deleted": True}
        gone = envelope(await client.call_tool("get_task", {"task_id": created["id"]}))
        assert gone["error_code"] == "not_found"
        twice = envelope(await client.call_tool("delete_task", {"task_id": created["id"]}))
        assert twice["error_code"] == "not_found"
        assert ok(await client.call_tool("get_user_stats", {}))["total"] == 1


async def test_a_results_text_is_its_structured_content_as_compact_json(
    settings: Settings, backend_url: str
) -> None:
    async with gateway_for_new_agent(settings, backend_url) as client:
        created = await client.call_tool("create_task", {"title": "t", "description": "d"})
        task_id = created.structured_content["id"]
        results = [
            created,
            await client.call_tool("get_task", {"task_id": task_id}),
            await client.call_tool("list_tasks", {}),
            await client.call_tool("list_tasks", {}),  # a cache hit reads the same
            await client.call_tool("get_user_stats", {}),
        ]
    for result in results:
        assert not result.is_error
        [block] = result.content
        text = block.text  # type: ignore[union-attr]
        assert json.loads(text) == result.structured_content
        # One spelling of each timestamp, no indentation.
        assert text == json.dumps(result.structured_content, separators=(",", ":"))
    assert results[2].content == results[3].content
    assert results[2].structured_content["tasks"][0]["created_at"].endswith("Z")


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("create_task", {}, "title"),
    ("create_task", {"title": ""}, "title"),
    ("create_task", {"title": "x" * 201}, "title"),
    ("create_task", {"title": 5}, "title"),
    ("create_task", {"title": "t", "description": "d" * 1001}, "description"),
    ("create_task", {"title": "t", "user_id": 1}, "user_id"),
    ("update_task", {"title": "t"}, "task_id"),
    ("update_task", {"task_id": 0, "title": "t"}, "task_id"),
    ("update_task", {"task_id": 1, "complete": True}, "complete"),
    ("update_task", {"task_id": 1, "completed": "maybe"}, "completed"),
    ("complete_task", {"task_id": "seven"}, "task_id"),
    ("complete_task", {"task_id": 2**63}, "task_id"),
    ("delete_task", {}, "task_id"),
    ("delete_task", {"task_id": -1}, "task_id"),
    ("list_tasks", {"status": "done"}, "status"),
    ("list_tasks", {"limit": 0}, "limit"),
    ("list_tasks", {"limit": 201}, "limit"),
    ("list_tasks", {"cursor": "c" * 201}, "cursor"),
    ("get_task", {"task_id": None}, "task_id"),
    ("get_task", {"task_id": 1.5}, "task_id"),
    ("get_user_stats", {"everything": True}, "everything"),
]


async def test_bad_arguments_get_a_validation_envelope_naming_the_field(
    settings: Settings, backend_url: str
) -> None:
    async with gateway_for_new_agent(settings, backend_url) as client:
        for tool, arguments, field in BAD_CALLS:
            body = envelope(await client.call_tool(tool, arguments))
            assert body["error_code"] == "validation_error", (tool, arguments, body)
            fields = [error["field"] for error in body["details"]["errors"]]
            assert field in fields, (tool, arguments, body)
        # Nothing was written by any of them.
        assert ok(await client.call_tool("get_user_stats", {}))["total"] == 0


async def test_the_backends_rules_come_back_as_its_envelope(
    settings: Settings, backend_url: str
) -> None:
    async with gateway_for_new_agent(settings, backend_url) as client:
        blank = envelope(await client.call_tool("create_task", {"title": "   "}))
        task = ok(await client.call_tool("create_task", {"title": "t"}))
        empty = envelope(await client.call_tool("update_task", {"task_id": task["id"]}))
        forged = envelope(await client.call_tool("list_tasks", {"cursor": "not-a-cursor"}))
        unknown = envelope(await client.call_tool("no_such_tool", {}))
    assert blank["error_code"] == "validation_error"  # trimmed to empty by the backend's rule
    assert empty["error_code"] == "validation_error"
    assert (forged["error_code"], forged["details"]) == ("validation_error", {"field": "cursor"})
    assert unknown["error_code"] == "not_found"


async def test_agents_cannot_see_or_touch_each_others_tasks(
    settings: Settings, backend_url: str
) -> None:
    alice, bob = sign_up(backend_url), sign_up(backend_url)
    async with gateway_as(settings, backend_url, alice) as client:
        task = ok(await client.call_tool("create_task", {"title": "alice's"}))
    async with gateway_as(settings, backend_url, bob) as client:
        for tool, arguments in [
            ("get_task", {"task_id": task["id"]}),
            ("update_task", {"task_id": task["id"], "title": "bob's now"}),
            ("complete_task", {"task_id": task["id"]}),
            ("delete_task", {"task_id": task["id"]}),
        ]:
            assert envelope(await client.call_tool(tool, arguments))["error_code"] == "not_found"
        assert ok(await client.call_tool("list_tasks", {}))["tasks"] == []
    async with gateway_as(settings, backend_url, alice) as client:
        assert ok(await client.call_tool("get_task", {"task_id": task["id"]})) == task


async def test_writes_answer_backend_unavailable_while_reads_go_on(
    settings: Settings, backend_url: str
) -> None:
    agent = sign_up(backend_url)
    async with gateway_as(settings, backend_url, agent) as client:
        task = ok(await client.call_tool("create_task", {"title": "before the outage"}))
    nobody_listens = f"http://127.0.0.1:{free_port()}"
    down = gateway_settings(
        settings, nobody_listens, gateway_token=SecretStr(agent.token), cache_ttl=0
    )
    server, _ = build_server(down)
    async with Client(server) as client:
        failed = envelope(await client.call_tool("create_task", {"title": "during"}))
        assert failed["error_code"] == "backend_unavailable"
        assert failed["details"] == {"reason": "ConnectError"}
        # The read path never needed the backend.
        page = ok(await client.call_tool("list_tasks", {}))
    assert [t["id"] for t in page["tasks"]] == [task["id"]]


async def test_without_credentials_every_tool_is_unauthorized(
    settings: Settings, backend_url: str
) -> None:
    server, _ = build_server(gateway_settings(settings, backend_url))
    async with Client(server) as client:
        for tool, arguments in [("create_task", {"title": "t"}), ("list_tasks", {})]:
            assert envelope(await client.call_tool(tool, arguments))["error_code"] == (
                "unauthorized"
            )


async def test_a_gateway_token_signed_with_another_secret_is_unauthorized(
    settings: Settings, backend_url: str
) -> None:
    forged = Settings(_env_file=None, jwt_secret="another-secret-" + "y" * 32)
    token = issue_token(forged, 1)
    server, _ = build_server(
        gateway_settings(settings, backend_url, gateway_token=SecretStr(token))
    )
    async with Client(server) as client:
        body = envelope(await client.call_tool("list_tasks", {}))
    assert body["error_code"] == "unauthorized"
    assert token not in json.dumps(body)


async def test_stdio_credentials_log_in_with_email_and_password(
    settings: Settings, backend_url: str
) -> None:
    agent = sign_up(backend_url)
    password = SecretStr(agent.password)
    async with gateway_with(
        settings, backend_url, gateway_email=agent.email, gateway_password=password
    ) as client:
        task = ok(await client.call_tool("create_task", {"title": "logged in"}))
        page = ok(await client.call_tool("list_tasks", {}))
    assert task["user_id"] == agent.id
    assert [t["id"] for t in page["tasks"]] == [task["id"]]


async def test_wrong_stdio_password_is_unauthorized_on_each_call(
    settings: Settings, backend_url: str
) -> None:
    agent = sign_up(backend_url)
    wrong = SecretStr("not-the-password")
    async with gateway_with(
        settings, backend_url, gateway_email=agent.email, gateway_password=wrong
    ) as client:
        body = envelope(await client.call_tool("create_task", {"title": "t"}))
    assert body["error_code"] == "unauthorized"
    assert "not-the-password" not in json.dumps(body)


async def test_trusted_mode_takes_user_id_and_vouches_for_it(
    settings: Settings, backend_url: str
) -> None:
    alice, bob = sign_up(backend_url), sign_up(backend_url)
    server, _ = build_server(gateway_settings(settings, backend_url, auth_mode="user_param"))
    async with Client(server) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        for name in WRITE_TOOLS | READ_TOOLS:
            assert "user_id" in tools[name].input_schema["required"], name

        task = ok(await client.call_tool("create_task", {"user_id": alice.id, "title": "a"}))
        assert task["user_id"] == alice.id
        mine = ok(await client.call_tool("list_tasks", {"user_id": alice.id}))
        theirs = ok(await client.call_tool("list_tasks", {"user_id": bob.id}))
        missing = envelope(await client.call_tool("list_tasks", {}))
        stranger = envelope(
            await client.call_tool("complete_task", {"user_id": bob.id, "task_id": task["id"]})
        )
    assert [t["id"] for t in mine["tasks"]] == [task["id"]]
    assert theirs["tasks"] == []
    assert missing["error_code"] == "validation_error"
    assert stranger["error_code"] == "not_found"
