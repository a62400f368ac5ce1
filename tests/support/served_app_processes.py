"""A served FastAPI app under uvicorn, and a gateway that serves it by its spec: the processes the
example apps' tests (notes, UUID items) start the same way."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from taskgate.devstack import Component, spawn_component, wait_healthy
from taskgate.pgpair import free_port


@contextmanager
def running_app(
    name: str, uvicorn_args: list[str], cwd: Path, env: dict[str, str], health_path: str
) -> Iterator[str]:
    """`python -m uvicorn <uvicorn_args> --port P` from `cwd`; yields its base URL once
    `health_path` answers."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            *uvicorn_args,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=cwd,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    app = Component(name, process, f"{url}{health_path}")
    try:
        wait_healthy(app, timeout=60)
        yield url
    finally:
        app.stop()


def spawn_spec_gateway(name: str, spec: str, env: dict[str, str]) -> tuple[Component, str]:
    """A gateway serving `spec` with `env` (FASTAPI_BASE_URL, READ_DATABASE_URLS, ...)."""
    port = free_port()
    gateway = spawn_component(
        name,
        ["gateway", "--transport", "http", "--port", str(port)],
        {"TASKGATE_APP": spec, "MCP_TRANSPORT": "http", "LOG_LEVEL": "WARNING", **env},
        f"http://127.0.0.1:{port}/healthz",
    )
    return gateway, f"http://127.0.0.1:{port}/mcp"
