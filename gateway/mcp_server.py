"""The gateway's MCP server: where a tool call enters from the SDK.

TaskgateMCP.call_tool passes each call through the call gate (gateway.call_gate: request id,
caller, limits, failure envelope, metrics), which the fast path in front of the SDK shares, and
refuses unknown arguments before the tool runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult

from gateway.call_gate import CallGate
from gateway.runtime import Runtime
from gateway.sdk_fence import registered_prompt_exists, registered_tool
from gateway.tool_results import size_for_agents
from shared.errors import MAX_LISTED_ERRORS, ErrorCode, TaskgateError


def _headers_of(context: Context[Any, Any] | None) -> Mapping[str, str] | None:
    """The HTTP request's headers, or None (stdio, in-process)."""
    try:
        return context.headers if context is not None else None
    except ValueError:  # a context made outside a request
        return None


def refuse_unknown_arguments(tool: Tool, arguments: dict[str, Any]) -> None:
    # The SDK ignores unknown arguments; an agent that misspells `completed` would get a silent
    # no-op, so name the unknown ones instead.
    unknown = sorted(set(arguments) - set(tool.parameters.get("properties", {})))
    if unknown:
        raise TaskgateError(
            ErrorCode.VALIDATION_ERROR,
            f"unknown arguments: {', '.join(unknown)[:200]}",
            {
                "errors": [
                    {"field": f[:100], "type": "extra_forbidden"}
                    for f in unknown[:MAX_LISTED_ERRORS]
                ]
            },
        )


class TaskgateMCP(MCPServer[Runtime]):
    """MCPServer whose tool calls all pass the call gate."""

    def __init__(self, *, gate: CallGate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gate = gate

    # Shared with any other entry in front of the SDK (the fast path), to gate calls alike.
    @property
    def gate(self) -> CallGate:
        return self._gate

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        tool = registered_tool(self, name)
        call_sdk = super().call_tool

        async def run() -> Any:
            if tool is not None:
                refuse_unknown_arguments(tool, arguments)
            return await call_sdk(name, arguments, context)

        # Agents may call any name; only the tools served become label values.
        label = name if tool is not None else "unknown"
        access = get_access_token()  # the bearer the SDK's middleware verified, if any
        return await self._gate.call(name, label, _headers_of(context), access, arguments, run)

    async def run_tool(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        """The tool run as the SDK runs it (arguments validated, result converted), without the
        call gate: for an entry in front of the SDK that gates the call itself (the fast path)."""
        result = await super().call_tool(name, arguments)
        if not isinstance(result, CallToolResult):  # a multi-round result: not for that entry
            raise TypeError(f"tool {name} answered {type(result).__name__}")
        return result

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Any = None
    ) -> Any:
        # The SDK raises ValueError for an unknown prompt, which its dispatcher logs with a
        # traceback: any agent could fill the log with tracebacks and text of its choosing.
        if registered_prompt_exists(self, name) is False:
            raise MCPError(INVALID_PARAMS, "unknown prompt")
        return await super().get_prompt(name, arguments, context)

    def add_tool(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        # A docstring is the tool's description for the model: drop its source indentation.
        if kwargs.get("description") is None and fn.__doc__:
            kwargs["description"] = inspect.cleandoc(fn.__doc__)
        annotations = kwargs.get("annotations")
        if kwargs.get("title") is None and annotations is not None:
            kwargs["title"] = annotations.title  # the display name clients read first
        super().add_tool(fn, *args, **kwargs)
        tool = registered_tool(self, kwargs.get("name") or fn.__name__)
        if tool is not None:
            size_for_agents(tool)
            self._gate.observer.metrics.start_at_zero(tool.name)
