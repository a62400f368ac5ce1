"""A gateway for the official MCP conformance suite, and the suite itself (pinned by
package-lock.json, installed here with `npm ci` when node_modules is missing)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import Settings
from taskgate.devstack import spawn_component, wait_healthy
from taskgate.pgpair import free_port
from tests.conftest import TEST_JWT_SECRET
from tests.integration.gateway.conftest import backend_url

__all__ = ["backend_url"]

HERE = Path(__file__).parent
CLI = HERE / "node_modules" / ".bin" / "conformance"


@pytest.fixture(scope="session")
def conformance_cli() -> Path:
    if not CLI.exists():
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed for the MCP conformance suite (Node 20 or later)"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True, timeout=600)
    return CLI


@pytest.fixture(scope="module")
def trusted_gateway(settings: Settings, backend_url: str) -> Iterator[str]:
    """A gateway in AUTH_MODE=user_param: the suite sends no bearer token, so this is the one
    mode it can reach. Everything else (transport, Host/Origin checks, tools) is as deployed."""
    port = free_port()
    env = {
        "DATABASE_URL": settings.database_url,
        "READ_DATABASE_URL": settings.read_database_url,
        "FASTAPI_BASE_URL": backend_url,
        "JWT_SECRET": TEST_JWT_SECRET,
        "AUTH_MODE": "user_param",
        "MCP_TRANSPORT": "http",
        "MCP_HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
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
