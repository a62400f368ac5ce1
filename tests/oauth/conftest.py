"""A backend and a gateway over the test pair whose MCP_PUBLIC_URL is the gateway's real URL (as
`taskgate dev` runs them), with short-lived access tokens so a test sees one expire."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskgate.devstack import spawn_component, wait_healthy
from taskgate.pgpair import PgPair, free_port
from tests.support.config import TEST_JWT_SECRET
from tests.support.oauth import ACCESS_TTL_SECONDS, OAuthStack


@pytest.fixture(scope="session")
def oauth_stack(pg_pair: PgPair) -> Iterator[OAuthStack]:
    backend_port, mcp_port = free_port(), free_port()
    backend_url = f"http://127.0.0.1:{backend_port}"
    mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
    env = {
        "DATABASE_URL": pg_pair.database_url,
        "READ_DATABASE_URL": pg_pair.read_database_url,
        "FASTAPI_BASE_URL": backend_url,
        "MCP_PUBLIC_URL": mcp_url,
        "JWT_SECRET": TEST_JWT_SECRET,
        "JWT_TTL_SECONDS": str(ACCESS_TTL_SECONDS),
        "MCP_TRANSPORT": "http",
        "MCP_HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    backend = spawn_component(
        "backend", ["backend", "--port", str(backend_port)], env, f"{backend_url}/healthz"
    )
    gateway = spawn_component(
        "gateway",
        ["gateway", "--transport", "http", "--port", str(mcp_port)],
        env,
        f"http://127.0.0.1:{mcp_port}/healthz",
    )
    try:
        wait_healthy(backend, timeout=120)
        wait_healthy(gateway, timeout=120)
        yield OAuthStack(backend_url, mcp_url)
    finally:
        gateway.stop()
        backend.stop()
