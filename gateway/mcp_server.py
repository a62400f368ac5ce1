"""The gateway's MCP server: where every tool call enters, and where every failure becomes the
shared error envelope.

TaskgateMCP.call_tool binds the call's request id, counts and logs the call (ToolCallObserver),
admits it under the caller's rate limit (CallLimits), refuses unknown arguments, runs the tool,
and answers any failure as an error result whose text is the envelope. The caller's identity is
resolved by the tool itself (gateway.identity), from the bearer token the SDK verified.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, TextContent
from pydantic import ValidationError

from gateway.metrics import ToolCallObserver
from gateway.ratelimit import CallLimits
from gateway.request_id import bind_request_id, reset_request_id
from gateway.runtime import Runtime
from gateway.tool_results import size_for_agents
from shared.errors import MAX_LISTED_ERRORS, ErrorCode, TaskgateError, validation_error

log = logging.getLogger(__name__)


def error_result(error: TaskgateError) -> CallToolResult:
    envelope = error.envelope().model_dump_json()
    return CallToolResult(content=[TextContent(type="text", text=envelope)], is_error=True)


def failure_result(name: str, exc: Exception) -> CallToolResult:
    """The envelope for a tool call that raised: its TaskgateError, the argument validation
    error, unknown tool, or else a server_error whose cause goes to the log only."""
    if isinstance(exc, TaskgateError):
        return error_result(exc)
    cause = exc.__cause__ if isinstance(exc, ToolError) else None
    if isinstance(cause, TaskgateError):
        return error_result(cause)
    if isinstance(cause, ValidationError):
        return error_result(
            validation_error(cause.errors(include_input=False), "arguments are not valid")
        )
    if isinstance(exc, ToolError) and cause is None and str(exc).startswith("Unknown tool"):
        return error_result(
            TaskgateError(ErrorCode.NOT_FOUND, f"unknown tool: {name[:100]}", {"tool": name[:100]})
        )
    log.error("tool %s failed", name, exc_info=exc)
    return error_result(TaskgateError(ErrorCode.SERVER_ERROR, "the tool failed"))


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
    """MCPServer whose tool calls are all counted and limited, and fail as the envelope."""

    def __init__(self, *, observer: ToolCallObserver, limits: CallLimits, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._observer = observer  # taskgate_tool_calls, latency, one log line per call
        self._limits = limits  # RATE_LIMIT_PER_USER

    # Read by any other entry in front of the SDK (an ASGI fast path), to count and limit alike.
    @property
    def observer(self) -> ToolCallObserver:
        return self._observer

    @property
    def limits(self) -> CallLimits:
        return self._limits

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        bound = bind_request_id(_headers_of(context))
        try:
            tool = self._tool_manager.get_tool(name)
            # Agents may call any name; only the tools served become label values.
            label = name if tool is not None else "unknown"
            return await self._observer.observe(
                label, lambda: self._call_admitted(name, label, tool, arguments, context)
            )
        finally:
            reset_request_id(bound)

    async def _call_admitted(
        self, name: str, label: str, tool: Tool | None, arguments: dict[str, Any], context: Any
    ) -> Any:
        try:
            await self._limits.admit(label, arguments)  # every call counts, a bad one too
            if tool is not None:
                refuse_unknown_arguments(tool, arguments)
            return await super().call_tool(name, arguments, context)
        except (TaskgateError, ToolError) as exc:
            return failure_result(name, exc)

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Any = None
    ) -> Any:
        # The SDK raises ValueError for an unknown prompt, which its dispatcher logs with a
        # traceback: any agent could fill the log with tracebacks and text of its choosing.
        if self._prompt_manager.get_prompt(name) is None:
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
        tool = self._tool_manager.get_tool(kwargs.get("name") or fn.__name__)
        if tool is not None:
            size_for_agents(tool)
            self._observer.metrics.start_at_zero(tool.name)
