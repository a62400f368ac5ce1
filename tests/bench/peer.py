"""The forward-everything peer: fastapi-mcp 0.4.0 over taskgate's own backend.

Runs in a virtualenv of its own (fastapi-mcp 0.4.0 needs mcp<2), with this repository on
PYTHONPATH. fastapi-mcp turns the backend's OpenAPI operations into MCP tools and answers each
call by forwarding it over pooled httpx to the running backend process, with the caller's
bearer token: every read and write goes through the backend, as in the design taskgate
replaces. Usage: python tests/bench/peer.py --port P --backend-url URL
"""

from __future__ import annotations

import argparse

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi_mcp import FastApiMCP

from backend.app import create_app
from shared.settings import Settings

# The backend operations the benchmark calls through the peer.
OPERATIONS = {("get", "/api/v1/tasks"), ("post", "/api/v1/tasks"), ("get", "/healthz")}


def build_peer(backend_url: str) -> FastAPI:
    backend = create_app(Settings())  # only its routes are used, for the OpenAPI schema
    include = [
        op["operationId"]
        for path, item in backend.openapi()["paths"].items()
        for method, op in item.items()
        if (method, path) in OPERATIONS
    ]
    # Same pool limits as the gateway's backend client (BACKEND_MAX_CONNECTIONS/KEEPALIVE).
    http = httpx.AsyncClient(
        base_url=backend_url,
        timeout=10.0,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )
    mcp = FastApiMCP(backend, http_client=http, include_operations=include)
    peer = FastAPI(title="fastapi-mcp peer")

    @peer.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    mcp.mount_http(peer, mount_path="/mcp")
    return peer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend-url", required=True)
    args = parser.parse_args()
    uvicorn.run(
        build_peer(args.backend_url),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
