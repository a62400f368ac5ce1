"""MCP requests beyond tools, with names and URIs an agent made up: each gets a protocol error
or a result, and none makes the gateway log a traceback (a log that an agent can fill with
tracebacks and its own text at will)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import PromptReference

from tests.support.threaded_client import ThreadedClient

# Agents send deprecated methods too; the client's warnings about them are expected here.
pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

Request = Callable[[Client], Coroutine[Any, Any, Any]]
REQUESTS: dict[str, Request] = {
    "prompts/get unknown": lambda c: c.get_prompt("no_such_prompt"),
    "prompts/get odd name": lambda c: c.get_prompt("' OR 1=1 --\n\x1b[31mERROR forged line"),
    "prompts/get with arguments": lambda c: c.get_prompt("x", {"a": "b" * 10_000}),
    "resources/read unknown": lambda c: c.read_resource("test://static-text"),
    "resources/read file": lambda c: c.read_resource("file:///etc/passwd"),
    "resources/templates/list": lambda c: c.list_resource_templates(),
    "resources/subscribe": lambda c: c.subscribe_resource("test://x"),
    "completion/complete": lambda c: c.complete(
        PromptReference(type="ref/prompt", name="x"), {"name": "a", "value": "b"}
    ),
    "logging/setLevel": lambda c: c.set_logging_level("debug"),
    "ping": lambda c: c.send_ping(),
}


@pytest.mark.parametrize("name", list(REQUESTS))
def test_made_up_requests_get_an_answer_and_log_no_traceback(
    gateway: ThreadedClient, name: str
) -> None:
    before = len(gateway.log.records)
    try:
        gateway.run(REQUESTS[name])
    except MCPError as exc:
        assert "Traceback" not in exc.error.message
    logged = gateway.log.records[before:]
    assert not [r for r in logged if r.exc_info], [r.getMessage() for r in logged]
