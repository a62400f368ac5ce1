"""Reading MCP tool results in tests: a success's structured answer, a failure's envelope."""

from __future__ import annotations

import json
from typing import Any

from mcp.types import CallToolResult, TextContent

from shared.errors import ErrorCode

ENVELOPE_CODES = {code.value for code in ErrorCode}


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a successful call."""
    assert not result.is_error, result.content
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content


def envelope(result: CallToolResult) -> dict[str, Any]:
    """The error envelope of a failed call, with no traceback in it."""
    assert result.is_error
    content = result.content[0]
    assert isinstance(content, TextContent)
    body: dict[str, Any] = json.loads(content.text)
    assert body["status"] == "error"
    assert "Traceback" not in content.text
    return body


def envelope_of(result: CallToolResult) -> dict[str, Any]:
    """The error envelope of a failed call, checked strictly for shape and for leaks."""
    assert result.is_error
    assert len(result.content) == 1
    content = result.content[0]
    assert isinstance(content, TextContent)
    assert "Traceback" not in content.text
    body: dict[str, Any] = json.loads(content.text)
    assert set(body) == {"status", "error_code", "message", "details"}, body
    assert body["status"] == "error"
    assert body["error_code"] in ENVELOPE_CODES, body
    return body


def error_code(result: CallToolResult) -> str:
    """The error code of a failed call."""
    assert result.is_error
    content = result.content[0]
    assert isinstance(content, TextContent)
    code: str = json.loads(content.text)["error_code"]
    return code
