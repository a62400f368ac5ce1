"""The real backend as a process on the real primary, for in-process gateway tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from mcp import Client
from pydantic import SecretStr

from gateway.server import build_server
from shared.settings import Settings
from taskgate.devstack import spawn_component, wait_healthy
from taskgate.pgpair import free_port
from tests.conftest import TEST_JWT_SECRET


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


@dataclass(frozen=True)
class Agent:
    id: int
    email: str
    password: str
    token: str


def sign_up(backend_url: str) -> Agent:
    """A new user and their bearer token, through the backend's REST API."""
    email = f"agent-{uuid.uuid4().hex[:12]}@example.com"
    password = uuid.uuid4().hex
    with httpx.Client(base_url=backend_url, timeout=10) as http:
        user = http.post("/api/v1/users", json={"email": email, "password": password})
        user.raise_for_status()
        token = http.post("/api/v1/auth/token", data={"username": email, "password": password})
        token.raise_for_status()
        return Agent(int(user.json()["id"]), email, password, str(token.json()["access_token"]))


def gateway_settings(settings: Settings, backend_url: str, **changes: Any) -> Settings:
    return settings.model_copy(update={"fastapi_base_url": backend_url, **changes})


@asynccontextmanager
async def gateway_as(settings: Settings, backend_url: str, agent: Agent) -> AsyncIterator[Client]:
    """An in-process gateway whose stdio-style credentials are the agent's token."""
    configured = gateway_settings(settings, backend_url, gateway_token=SecretStr(agent.token))
    server, _ = build_server(configured)
    async with Client(server) as client:
        yield client
