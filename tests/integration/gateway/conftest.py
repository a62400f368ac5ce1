"""The real backend as a process on the real primary, for in-process gateway tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client
from pydantic import SecretStr

from gateway.server import build_server
from shared.settings import Settings
from taskgate.devstack import spawn_component, wait_healthy
from taskgate.pgpair import free_port
from tests.conftest import TEST_JWT_SECRET
from tests.conftest import Agent as Agent
from tests.conftest import sign_up as sign_up


@pytest.fixture(scope="session")
def backend_url(settings: Settings) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "DATABASE_URL": settings.database_url,
        "READ_DATABASE_URL": settings.read_database_url,
        "JWT_SECRET": TEST_JWT_SECRET,
        "LOG_LEVEL": "WARNING",
    }
    backend = spawn_component("backend", ["backend", "--port", str(port)], env, f"{url}/healthz")
    try:
        wait_healthy(backend)
        yield url
    finally:
        backend.stop()


def gateway_settings(settings: Settings, backend_url: str, **changes: Any) -> Settings:
    return settings.model_copy(update={"fastapi_base_url": backend_url, **changes})


@asynccontextmanager
async def gateway_as(settings: Settings, backend_url: str, agent: Agent) -> AsyncIterator[Client]:
    """An in-process gateway whose stdio-style credentials are the agent's token."""
    configured = gateway_settings(settings, backend_url, gateway_token=SecretStr(agent.token))
    server, _ = build_server(configured)
    async with Client(server) as client:
        yield client
