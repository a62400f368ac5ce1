"""Benchmark-only tools, registered when MCP_BENCH_TOOLS is on: the MCP transport's floor."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations


def register_bench_tools(server: MCPServer) -> None:
    @server.tool(annotations=ToolAnnotations(readOnlyHint=True, idempotentHint=True))
    async def ping() -> str:
        """Answer 'pong' and do nothing else. For measuring the MCP transport itself."""
        return "pong"
