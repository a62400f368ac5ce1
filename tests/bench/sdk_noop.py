"""The floor: the mcp SDK's own server with one `ping` tool that returns "pong".

Stateless, JSON responses, on the gateway's uvicorn settings (uvloop, httptools, no access log),
and no auth: what any MCP server built on this SDK pays per call before doing any work.
Usage: python -m tests.bench.sdk_noop --port P
"""

from __future__ import annotations

import argparse

import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def build_app() -> Starlette:
    server = MCPServer("sdk no-op", log_level="WARNING")  # as the gateway runs in the bench

    @server.tool()
    def ping() -> str:
        """Answer "pong"."""
        return "pong"

    app = server.streamable_http_app(
        streamable_http_path="/mcp", stateless_http=True, json_response=True
    )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app.router.routes.append(Route("/healthz", healthz, methods=["GET"]))
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build_app(), host="127.0.0.1", port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
