"""Backend and gateway processes on free loopback ports, as `taskgate dev` starts them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from shared.settings import Settings
from taskgate.devstack import Component, spawn_component, wait_healthy
from tests.support.config import TEST_JWT_SECRET, TEST_MCP_URL
from tests.support.ports import free_port


@contextmanager
def backend_process(
    env: dict[str, str], timeout: float = 90.0, port: int | None = None
) -> Iterator[tuple[Component, str]]:
    """A backend process with `env` (plus the test JWT secret): the process and its base URL.
    `port`: one chosen beforehand (its URL already in `env`, as the OAuth issuer)."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"JWT_SECRET": TEST_JWT_SECRET, "LOG_LEVEL": "WARNING", **env}
    backend = spawn_component("backend", ["backend", "--port", str(port)], env, f"{url}/healthz")
    try:
        wait_healthy(backend, timeout=timeout)
        yield backend, url
    finally:
        backend.stop()


@contextmanager
def running_backend(
    env: dict[str, str], timeout: float = 90.0, port: int | None = None
) -> Iterator[str]:
    """A backend process with `env` (plus the test JWT secret); yields its base URL."""
    with backend_process(env, timeout, port) as (_, url):
        yield url


@contextmanager
def gateway_process(
    settings: Settings,
    backend_url: str,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[tuple[Component, str]]:
    """A gateway process on streamable HTTP over the test pair and a backend: the process and
    its MCP URL. `port`: one chosen beforehand (its URL already given to the backend)."""
    port = port or free_port()
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
        yield gateway, f"http://127.0.0.1:{port}/mcp"
    finally:
        gateway.stop()


@contextmanager
def running_gateway(
    settings: Settings, backend_url: str, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """A gateway process on streamable HTTP over the test pair and a backend; yields its MCP URL."""
    with gateway_process(settings, backend_url, extra_env) as (_, url):
        yield url
