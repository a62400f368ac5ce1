"""The gateway's composition root: the MCP server, its tools, and the HTTP app around it."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, TextContent
from pydantic import ValidationError
from starlette.applications import Starlette

from gateway.auth import JwtVerifier
from gateway.fast_path import install_fast_path
from gateway.http_headers import StripHeaderWhitespace
from gateway.metrics import ToolCallObserver
from gateway.ops import Operations
from gateway.ratelimit import CallLimits
from gateway.request_id import bind_request_id, reset_request_id
from gateway.runtime import RuntimeRef
from gateway.tools.bench import register_bench_tools
from gateway.tools.read import register_read_tools
from gateway.tools.write import register_write_tools
from shared.errors import MAX_LISTED_ERRORS, ErrorCode, TaskgateError, validation_error
from shared.settings import Settings

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Manage your own tasks. Write tools (create_task, update_task, complete_task, delete_task) "
    "change tasks; read tools (list_tasks, get_task, get_user_stats) read them, and always show "
    "your own latest writes. Failures come back as an error result whose text is a JSON envelope "
    "{status, error_code, message, details}."
)


def error_result(error: TaskgateError) -> CallToolResult:
    envelope = error.envelope().model_dump_json()
    return CallToolResult(content=[TextContent(type="text", text=envelope)], is_error=True)


def _headers_of(context: Context[Any, Any] | None) -> Mapping[str, str] | None:
    """The HTTP request's headers, or None (stdio, in-process)."""
    try:
        return context.headers if context is not None else None
    except ValueError:  # a context made outside a request
        return None


def _refuse_unknown_arguments(tool: Tool | None, arguments: dict[str, Any]) -> None:
    # The SDK ignores unknown arguments; an agent that misspells `completed` would get a silent
    # no-op, so name the unknown ones instead.
    if tool is None:
        return
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


class TaskgateMCP(MCPServer[Any]):
    """MCPServer whose tool failures all leave as the shared error envelope."""

    tool_observer: ToolCallObserver | None = None  # metrics and logs per call (gateway.ops)
    call_limits: CallLimits | None = None  # tool calls per user (gateway.ratelimit)

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
        super().add_tool(fn, *args, **kwargs)

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        if self.tool_observer is None:
            return await self._call_tool_enveloped(name, arguments, context)
        return await self.tool_observer.observe(
            name, context, lambda: self._call_tool_enveloped(name, arguments, context)
        )

    async def _call_tool_enveloped(
        self, name: str, arguments: dict[str, Any], context: Any = None
    ) -> Any:
        bound = bind_request_id(_headers_of(context))
        try:
            tool = self._tool_manager.get_tool(name)
            if self.call_limits is not None:  # every call counts, a bad one too
                await self.call_limits.admit(name if tool is not None else "unknown", arguments)
            _refuse_unknown_arguments(tool, arguments)
            return await super().call_tool(name, arguments, context)
        except TaskgateError as exc:
            return error_result(exc)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, TaskgateError):
                return error_result(cause)
            if isinstance(cause, ValidationError):
                return error_result(
                    validation_error(cause.errors(include_input=False), "arguments are not valid")
                )
            if cause is None and str(exc).startswith("Unknown tool"):
                return error_result(
                    TaskgateError(
                        ErrorCode.NOT_FOUND, f"unknown tool: {name[:100]}", {"tool": name[:100]}
                    )
                )
            log.exception("tool %s failed", name)
            return error_result(TaskgateError(ErrorCode.SERVER_ERROR, "the tool failed"))
        finally:
            reset_request_id(bound)


def build_server(settings: Settings) -> tuple[TaskgateMCP, RuntimeRef]:
    ref = RuntimeRef(settings)
    ops = Operations(settings, ref)
    auth = None
    verifier = None
    if settings.auth_mode == "token":
        verifier = JwtVerifier(settings)
        auth = AuthSettings(
            issuer_url=settings.backend_url,  # the backend is the authorization server
            resource_server_url=settings.mcp_url,
            validate_token_resource=False,  # JwtVerifier checks the audience itself
        )
    server = TaskgateMCP(
        name="taskgate",
        instructions=INSTRUCTIONS,
        version="0.1.0",
        token_verifier=verifier,
        auth=auth,
        lifespan=ops.lifespan,
    )
    register_read_tools(server, ref)
    register_write_tools(server, ref)
    if settings.mcp_bench_tools:
        register_bench_tools(server)

    ops.install(server)  # /healthz, /readyz, /metrics, /admin/*
    server.call_limits = CallLimits(settings, lambda: ref.get().buckets, ops.metrics.rate_limited)
    return server, ref


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection: only the deployment's own Host and Origin values are served.

    MCP_ALLOWED_HOSTS / MCP_ALLOWED_ORIGINS replace the defaults: loopback, MCP_HOST, and the
    host of MCP_PUBLIC_URL.
    """
    public = urlsplit(settings.mcp_url)
    hosts = settings.mcp_allowed_hosts or [
        "127.0.0.1:*",
        "localhost:*",
        "[::1]:*",
        f"{settings.mcp_host}:*",
        public.netloc,
    ]
    origins = settings.mcp_allowed_origins or [
        "http://127.0.0.1:*",
        "http://localhost:*",
        "http://[::1]:*",
        f"{public.scheme}://{public.netloc}",
    ]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(dict.fromkeys(hosts)),
        allowed_origins=list(dict.fromkeys(origins)),
    )


def build_http_app(settings: Settings) -> Starlette:
    server, ref = build_server(settings)
    security = transport_security(settings)
    app = server.streamable_http_app(
        streamable_http_path=settings.mcp_path,
        stateless_http=settings.mcp_stateless,
        json_response=settings.mcp_json_response,
        transport_security=security,
        max_request_body_size=settings.max_body_bytes,
        host=settings.mcp_host,
    )
    # Added first, so it runs inside StripHeaderWhitespace and sees the headers the SDK sees.
    install_fast_path(
        app, settings, server, ref, server.tool_observer, server.call_limits, error_result, security
    )
    app.add_middleware(StripHeaderWhitespace)
    return app
