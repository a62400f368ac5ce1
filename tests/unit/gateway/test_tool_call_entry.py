"""Where a tool call enters (TaskgateMCP.call_tool): one request id per call, seen by the tool and
by the call's log line, gone after the call; unknown tools and tool failures as the envelope."""

from __future__ import annotations

import logging

import pytest
from mcp import Client

from gateway.server import build_server
from shared.logs import RequestIdFilter, current_request_id
from shared.settings import Settings
from tests.support.mcp_results import envelope_of

# No database is reached: the lag sampler's failures are logged and the tools here read none.
NO_DATABASE = "postgresql+asyncpg://nobody@127.0.0.1:1/none"


def _settings() -> Settings:
    return Settings(_env_file=None, mcp_bench_tools=True, read_database_url=NO_DATABASE)


async def test_a_call_has_one_request_id_seen_by_the_tool_and_its_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, _ = build_server(_settings())
    seen: list[str | None] = []

    @server.tool()
    async def who_am_i() -> str:
        """Test tool: the request id in scope."""
        seen.append(current_request_id())
        return "ok"

    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="gateway.calls"):
        async with Client(server) as client:
            await client.call_tool("who_am_i", {})
            await client.call_tool("who_am_i", {})
    lines = [r for r in caplog.records if r.name == "gateway.calls"]
    assert len(seen) == 2 and all(seen) and seen[0] != seen[1]  # a new id per call
    assert [r.__dict__["request_id"] for r in lines] == seen
    assert [r.__dict__["outcome"] for r in lines] == ["ok", "ok"]
    assert current_request_id() is None  # unbound once the call is answered


async def test_an_unknown_tool_and_a_failing_tool_answer_the_envelope(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, _ = build_server(_settings())

    @server.tool()
    async def broken() -> str:
        """Test tool: fails with a message that must not reach the agent."""
        raise RuntimeError("secret internals")

    with caplog.at_level(logging.INFO, logger="gateway.calls"):
        async with Client(server) as client:
            unknown = envelope_of(await client.call_tool("no_such_tool", {}))
            failed = envelope_of(await client.call_tool("broken", {}))
    assert unknown["error_code"] == "not_found" and unknown["details"] == {"tool": "no_such_tool"}
    assert failed["error_code"] == "server_error" and "secret" not in str(failed)
    calls = [
        (r.__dict__["tool"], r.__dict__["outcome"])
        for r in caplog.records
        if r.name == "gateway.calls"
    ]
    assert calls == [("unknown", "not_found"), ("broken", "server_error")]
