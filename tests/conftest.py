"""Fixtures shared by every test level: a real PostgreSQL primary and streaming replica."""

from __future__ import annotations

import os
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
# Every test gateway's MCP_PUBLIC_URL (its token audience), whatever port it listens on, so one
# gateway token from sign_up() works with any of them. The OAuth tests use real URLs instead.
TEST_MCP_URL = "http://gateway.taskgate.test/mcp"


@pytest.fixture(scope="session", autouse=True)
def _test_mcp_public_url() -> Iterator[None]:
    """Backends and gateways that tests spawn inherit the shared audience from the environment."""
    before = os.environ.get("MCP_PUBLIC_URL")
    os.environ["MCP_PUBLIC_URL"] = TEST_MCP_URL
    yield
    if before is None:
        os.environ.pop("MCP_PUBLIC_URL", None)
    else:
        os.environ["MCP_PUBLIC_URL"] = before


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
        mcp_public_url=TEST_MCP_URL,
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
        "MCP_PUBLIC_URL": TEST_MCP_URL,
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
    token: str  # for MCP: audience = the gateway's MCP_PUBLIC_URL (TEST_MCP_URL by default)
    backend_token: str  # for the backend's REST API


def sign_up(backend_url: str, mcp_url: str = TEST_MCP_URL) -> Agent:
    """A new user and their two bearer tokens, through the backend's REST API."""
    email = f"agent-{uuid.uuid4().hex[:12]}@example.com"
    password = uuid.uuid4().hex
    with httpx.Client(base_url=backend_url, timeout=10) as http:
        user = http.post("/api/v1/users", json={"email": email, "password": password})
        user.raise_for_status()
        tokens = []
        for resource in (mcp_url, None):
            form = {"username": email, "password": password}
            if resource is not None:
                form["resource"] = resource
            reply = http.post("/api/v1/auth/token", data=form)
            reply.raise_for_status()
            tokens.append(str(reply.json()["access_token"]))
        return Agent(int(user.json()["id"]), email, password, tokens[0], tokens[1])
