"""Fixtures shared by every test level: a real PostgreSQL primary and streaming replica."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shared.migrate import upgrade_to_head
from shared.settings import Settings
from taskgate.devstack import spawn_component, wait_healthy
from taskgate.pgpair import PgPair, free_port

TEST_JWT_SECRET = "test-secret-" + "x" * 32


@pytest.fixture(scope="session")
def pg_pair() -> Iterator[PgPair]:
    """One migrated primary + replica for the whole run, on free loopback ports."""
    root = Path(tempfile.mkdtemp(prefix="taskgate-test-pg-"))
    pair = PgPair(root)
    try:
        pair.start()
        upgrade_to_head(pair.database_url)
        yield pair
    finally:
        pair.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(pg_pair: PgPair) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=pg_pair.database_url,
        read_database_url=pg_pair.read_database_url,
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        cache_url="memory://",
    )


@contextmanager
def running_gateway(
    settings: Settings, backend_url: str, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """A gateway process on streamable HTTP over the test pair and a backend; yields its MCP URL."""
    port = free_port()
    env = {
        "DATABASE_URL": settings.database_url,
        "READ_DATABASE_URL": settings.read_database_url,
        "FASTAPI_BASE_URL": backend_url,
        "JWT_SECRET": TEST_JWT_SECRET,
        "MCP_TRANSPORT": "http",
        "MCP_HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    gateway = spawn_component(
        "gateway",
        ["gateway", "--transport", "http", "--port", str(port)],
        env,
        f"http://127.0.0.1:{port}/healthz",
    )
    try:
        wait_healthy(gateway, timeout=120)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        gateway.stop()


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
