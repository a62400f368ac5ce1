"""The cached peer: FastMCP 4.2 over taskgate's backend routes, with its ResponseCachingMiddleware.

What `FastMCP.from_fastapi` builds (an OpenAPIProvider over the app's OpenAPI document), but its
httpx client calls the running backend process over pooled HTTP, as the other servers do:
4.2's `from_fastapi` always calls the app in-process (ASGITransport, no lifespan, so no database
engine), and takes no client of ours. Only `GET` and `POST /api/v1/tasks` become tools, named
`list_tasks` and `create_task`. `list_tasks` results are cached for CACHE_TTL seconds.

The caller's bearer goes to the backend with each call (FastMCP strips `Authorization` from the
headers it forwards), so every user sees their own tasks. A JWT verifier with the stack's secret
makes FastMCP see the caller's token: its cache is partitioned by that token, where without one
every caller would share one anonymous partition, and one user's page would answer all.

Usage: python -m tests.bench.fastmcp_peer --port P --backend-url URL (settings from the env).
"""

from __future__ import annotations

import argparse

import httpx2
import uvicorn
from fastmcp import FastMCP
from fastmcp.server.auth.providers.jwt import JWTVerifier
from fastmcp.server.dependencies import get_http_headers
from fastmcp.server.middleware.caching import CallToolSettings, ResponseCachingMiddleware
from fastmcp.server.providers.openapi import MCPType, RouteMap
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from backend.app import create_app
from shared.api import API_PREFIX
from shared.settings import Settings
from shared.tokens import ALGORITHM

TASKS = f"{API_PREFIX}/tasks"
TOOL_NAMES = {("get", TASKS): "list_tasks", ("post", TASKS): "create_task"}


async def forward_bearer(request: httpx2.Request) -> None:
    """Pass the MCP caller's own bearer token on to the backend."""
    caller = get_http_headers(include={"authorization"}).get("authorization")
    if caller:
        request.headers["Authorization"] = caller


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def build_peer(settings: Settings, backend_url: str, cache_ttl: int) -> FastMCP:
    spec = create_app(settings).openapi()  # only the routes' schema; calls go to backend_url
    names = {
        op["operationId"]: TOOL_NAMES[(method, path)]
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if (method, path) in TOOL_NAMES
    }
    # Same pool limits as the gateway's backend client (BACKEND_MAX_CONNECTIONS/KEEPALIVE).
    client = httpx2.AsyncClient(
        base_url=backend_url,
        timeout=10.0,
        limits=httpx2.Limits(max_connections=100, max_keepalive_connections=20),
        event_hooks={"request": [forward_bearer]},
    )
    pattern = f"^{TASKS}$"
    peer = FastMCP.from_openapi(
        spec,
        client=client,
        name="fastmcp cached peer",
        route_maps=[
            RouteMap(methods=["GET", "POST"], pattern=pattern, mcp_type=MCPType.TOOL),
            RouteMap(mcp_type=MCPType.EXCLUDE),
        ],
        mcp_names=names,
        auth=JWTVerifier(
            public_key=settings.jwt_secret.get_secret_value(),
            algorithm=ALGORITHM,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,  # backend tokens: the peer passes them through
        ),
    )
    peer.add_middleware(
        ResponseCachingMiddleware(
            call_tool_settings=CallToolSettings(ttl=cache_ttl, included_tools=["list_tasks"])
        )
    )

    peer.custom_route("/healthz", methods=["GET"])(healthz)
    return peer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend-url", required=True)
    parser.add_argument("--cache-ttl", type=int, default=300)
    args = parser.parse_args()
    settings = Settings()
    app = build_peer(settings, args.backend_url, args.cache_ttl).http_app(
        path="/mcp", stateless_http=True, json_response=True
    )
    # The gateway's uvicorn settings (taskgate/cli.py): uvloop and httptools, no access log.
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
