"""A backend and a gateway over the test pair whose MCP_PUBLIC_URL is the gateway's real URL (as
`taskgate dev` runs them), with short-lived access tokens so a test sees one expire."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.settings import Settings
from tests.support.oauth import ACCESS_TTL_SECONDS, OAuthStack
from tests.support.ports import free_port
from tests.support.processes import gateway_process, running_backend


@pytest.fixture(scope="session")
def oauth_stack(settings: Settings) -> Iterator[OAuthStack]:
    backend_port, mcp_port = free_port(), free_port()
    mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
    # Each names the other's real URL: the backend is the gateway's authorization server.
    env = {
        "FASTAPI_BASE_URL": f"http://127.0.0.1:{backend_port}",
        "MCP_PUBLIC_URL": mcp_url,
        "JWT_TTL_SECONDS": str(ACCESS_TTL_SECONDS),
    }
    backend_env = {
        "DATABASE_URL": settings.database_url,
        "READ_DATABASE_URL": settings.read_database_url,
        **env,
    }
    with (
        running_backend(backend_env, timeout=120, port=backend_port) as backend_url,
        gateway_process(settings, backend_url, env, port=mcp_port) as (_, url),
    ):
        assert url == mcp_url
        yield OAuthStack(backend_url, mcp_url)
