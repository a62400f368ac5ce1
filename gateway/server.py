"""The gateway's composition root: the MCP server, its tools, and the HTTP app around it."""

from __future__ import annotations

import logging
from typing import Any

from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, TextContent
from pydantic import ValidationError
from starlette.applications import Starlette

from gateway.auth import JwtVerifier
from gateway.metrics import ToolCallObserver
from gateway.ops import Operations
from gateway.runtime import RuntimeRef
from gateway.tools.bench import register_bench_tools
from gateway.tools.read import register_read_tools
from gateway.tools.write import register_write_tools
from shared.errors import ErrorCode, TaskgateError
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


def _validation_error(exc: ValidationError) -> TaskgateError:
    errors = [
        {
            "field": ".".join(str(p) for p in err["loc"]),
            "type": err["type"],
            "message": err["msg"],
        }
        for err in exc.errors(include_input=False)[:20]
    ]
    return TaskgateError(ErrorCode.VALIDATION_ERROR, "arguments are not valid", {"errors": errors})


class TaskgateMCP(MCPServer[Any]):
    """MCPServer whose tool failures all leave as the shared error envelope."""

    tool_observer: ToolCallObserver | None = None  # metrics and logs per call (gateway.ops)

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        if self.tool_observer is None:
            return await self._call_tool_enveloped(name, arguments, context)
        return await self.tool_observer.observe(
            name, context, lambda: self._call_tool_enveloped(name, arguments, context)
        )

    async def _call_tool_enveloped(
        self, name: str, arguments: dict[str, Any], context: Any = None
    ) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, TaskgateError):
                return error_result(cause)
            if isinstance(cause, ValidationError):
                return error_result(_validation_error(cause))
            if cause is None and str(exc).startswith("Unknown tool"):
                return error_result(
                    TaskgateError(ErrorCode.NOT_FOUND, f"unknown tool: {name}", {"tool": name})
                )
            log.exception("tool %s failed", name)
            return error_result(TaskgateError(ErrorCode.SERVER_ERROR, "the tool failed"))


def build_server(settings: Settings) -> tuple[TaskgateMCP, RuntimeRef]:
    ref = RuntimeRef(settings)
    ops = Operations(settings, ref)
    auth = None
    verifier = None
    if settings.auth_mode == "token":
        verifier = JwtVerifier(settings)
        auth = AuthSettings(
            issuer_url=settings.fastapi_base_url,
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
    return server, ref


def transport_security(settings: Settings) -> TransportSecuritySettings:
    hosts = settings.mcp_allowed_hosts or [
        "127.0.0.1:*",
        "localhost:*",
        "[::1]:*",
        f"{settings.mcp_host}:*",
    ]
    origins = settings.mcp_allowed_origins or [
        "http://127.0.0.1:*",
        "http://localhost:*",
        "http://[::1]:*",
    ]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def build_http_app(settings: Settings) -> Starlette:
    server, _ = build_server(settings)
    return server.streamable_http_app(
        streamable_http_path=settings.mcp_path,
        stateless_http=settings.mcp_stateless,
        json_response=settings.mcp_json_response,
        transport_security=transport_security(settings),
        max_request_body_size=settings.max_body_bytes,
        host=settings.mcp_host,
    )
