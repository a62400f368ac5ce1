"""The one gate every tool call passes, whichever path answers it: the SDK's
(gateway.mcp_server.TaskgateMCP.call_tool) or the fast path in front of it (gateway.fast_path).

In order: the call's request id is bound (X-Request-ID); its caller is resolved
(gateway.identity.resolve_principal); the call is admitted under that caller's limits; the tool
runs with its caller bound; a failure becomes the error envelope; and the call is counted, timed
and logged once, with its outcome taken from the value (never parsed back from the envelope).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.context import CallNext, ServerMiddleware, ServerRequestContext
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent
from pydantic import ValidationError

from gateway.identity import acting_for, resolve_principal
from gateway.metrics import ToolCallObserver
from gateway.ratelimit import CallLimits
from gateway.request_id import bind_request_id, reset_request_id
from shared.errors import ErrorCode, TaskgateError, validation_error
from shared.settings import Settings
from shared.user_ids import UserIds

log = logging.getLogger(__name__)

T = TypeVar("T")


def error_result(error: TaskgateError) -> CallToolResult:
    envelope = error.envelope().model_dump_json()
    return CallToolResult(content=[TextContent(type="text", text=envelope)], is_error=True)


def failure_of(name: str, exc: Exception) -> TaskgateError:
    """The error a failed call answers: its TaskgateError, the argument validation error,
    unknown tool, or else a server_error whose cause goes to the log only."""
    if isinstance(exc, TaskgateError):
        return exc
    cause = exc.__cause__ if isinstance(exc, ToolError) else None
    if isinstance(cause, TaskgateError):
        return cause
    if isinstance(cause, ValidationError):
        return validation_error(cause.errors(include_input=False), "arguments are not valid")
    if isinstance(exc, ToolError) and cause is None and str(exc).startswith("Unknown tool"):
        return TaskgateError(
            ErrorCode.NOT_FOUND, f"unknown tool: {name[:100]}", {"tool": name[:100]}
        )
    log.error("tool %s failed", name, exc_info=exc)
    return TaskgateError(ErrorCode.SERVER_ERROR, "the tool failed")


class CallGate:
    """Request id, caller, limits, failure envelope and metrics for one tool call."""

    def __init__(
        self,
        settings: Settings,
        observer: ToolCallObserver,
        limits: CallLimits,
        user_ids: UserIds,
    ) -> None:
        # AUTH_MODE=user_param: the caller is the `user_id` argument, and no bearer is checked.
        self.trusted = settings.auth_mode == "user_param"
        self.user_ids = user_ids  # the app's kind of user id
        self.observer = observer  # taskgate_tool_calls, latency, one log line per call
        self.limits = limits  # RATE_LIMIT_PER_USER

    async def call(
        self,
        name: str,
        label: str,
        headers: Mapping[str, str] | None,
        access: AccessToken | None,
        arguments: Mapping[str, object],
        run: Callable[[], Awaitable[T]],
    ) -> T | CallToolResult:
        """Run `run` as the call of tool `name`. `label` is its metric label: the caller passes
        'unknown' for a name it does not serve. `access`: the verified bearer, if any."""
        bound = bind_request_id(headers)
        started = time.perf_counter()
        outcome = "exception"
        try:
            result, outcome = await self._admitted(name, label, access, arguments, run)
            return result
        finally:
            self.observer.record(label, outcome, time.perf_counter() - started)
            reset_request_id(bound)

    async def _admitted(
        self,
        name: str,
        label: str,
        access: AccessToken | None,
        arguments: Mapping[str, object],
        run: Callable[[], Awaitable[T]],
    ) -> tuple[T | CallToolResult, str]:
        try:
            principal = resolve_principal(self.trusted, access, arguments, self.user_ids)
            # A bad call counts too; one that read the database pays for it afterwards.
            async with self.limits.admitted(label, principal.limit_key):
                with acting_for(principal):
                    result = await run()
        except Exception as exc:  # the envelope, whatever failed; the cause goes to the log
            error = failure_of(name, exc)
            return error_result(error), error.code.value
        failed = isinstance(result, CallToolResult) and result.is_error
        return result, "error" if failed else "ok"


# The JSON-RPC error code of a request other than a tool call refused by the limits (the
# implementation-defined server error range); its data is the envelope.
RATE_LIMITED_RPC_CODE = -32029
# Methods named in metric labels; any other is "other", so agents cannot make up label values.
_LABELLED_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "tools/list",
        "prompts/list",
        "prompts/get",
        "resources/list",
        "resources/read",
        "resources/templates/list",
        "completion/complete",
        "logging/setLevel",
    }
)


class MethodLimits(ServerMiddleware[Any]):
    """The same per-user limits for every MCP request other than a tool call (tools/list,
    prompts, resources, ping, initialize): the call gate admits tool calls itself."""

    def __init__(self, limits: CallLimits, user_ids: UserIds) -> None:
        self.limits = limits
        self.user_ids = user_ids

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        if ctx.method == "tools/call":
            return await call_next(ctx)
        label = ctx.method if ctx.method in _LABELLED_METHODS else "other"
        # The bearer's user; none in trusted mode, where only tool calls name a user.
        principal = resolve_principal(False, get_access_token(), {}, self.user_ids)
        try:
            async with self.limits.admitted(label, principal.limit_key):
                return await call_next(ctx)
        except TaskgateError as exc:
            if exc.code is not ErrorCode.RATE_LIMITED:
                raise
            envelope = exc.envelope().model_dump(mode="json")
            raise MCPError(RATE_LIMITED_RPC_CODE, exc.message, envelope) from None
