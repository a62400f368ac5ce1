"""The UUID items app (tests/support/uuid_items) as processes: the app under uvicorn, and
gateways that serve it by its spec."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jwt

from taskgate.devstack import Component, spawn_component, wait_healthy
from taskgate.pgpair import free_port

REPO = Path(__file__).resolve().parents[3]
ITEMS_SPEC = "tests.support.uuid_items.spec:SPEC"
ITEMS_SECRET = "items-Vb8Qz3Lm6Ws1Xc4Rt7Yp2Nk5Jh9Gd0Fa"  # random: the gateway refuses weak ones
SERVICE_USER, SERVICE_PASSWORD = "items-service", "service-password-for-tests"


def items_env(database_url: str) -> dict[str, str]:
    """What the app reads, and what the gateway's spec reads of it (secrets, auth choice)."""
    return {
        "ITEMS_SECRET": ITEMS_SECRET,
        "DATABASE_URL": database_url,
        "ITEMS_SERVICE_USER": SERVICE_USER,
        "ITEMS_SERVICE_PASSWORD": SERVICE_PASSWORD,
    }


def agent_token(sub: str) -> str:
    """A token of the app's own kind, as the template issues them: the user's UUID in `sub`."""
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 3600}, ITEMS_SECRET, "HS256")


@contextmanager
def running_items_app(database_url: str) -> Iterator[str]:
    """The app under uvicorn, from the repository's root; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.support.uuid_items.app:app",
         "--port", str(port), "--log-level", "warning"],
        cwd=REPO,
        env={**os.environ, **items_env(database_url)},
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    app = Component("uuid items app", process, f"{url}/api/v1/utils/health-check/")
    try:
        wait_healthy(app, timeout=60)
        yield url
    finally:
        app.stop()


def spawn_items_gateway(env: dict[str, str]) -> tuple[Component, str]:
    """A gateway serving the items spec with `env` (FASTAPI_BASE_URL, READ_DATABASE_URLS, ...)."""
    port = free_port()
    gateway = spawn_component(
        "uuid items gateway",
        ["gateway", "--transport", "http", "--port", str(port)],
        {"TASKGATE_APP": ITEMS_SPEC, "MCP_TRANSPORT": "http", "LOG_LEVEL": "WARNING", **env},
        f"http://127.0.0.1:{port}/healthz",
    )
    return gateway, f"http://127.0.0.1:{port}/mcp"
