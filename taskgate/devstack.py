"""`taskgate dev`, and the same stack for end-to-end tests: the pair, the backend, the gateway."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx

from shared.migrate import upgrade_to_head
from taskgate.pgpair import PgPair, PgPairError, free_port

DEMO_EMAIL = "demo@example.com"


def _say(message: str) -> None:
    print(f"taskgate: {message}", file=sys.stderr, flush=True)


@dataclass
class Component:
    name: str
    process: subprocess.Popen[bytes]
    health_url: str

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn_component(name: str, args: list[str], env: dict[str, str], health_url: str) -> Component:
    """Start `taskgate <args>` in a child process; wait_healthy waits for it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "taskgate", *args],
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
    )
    return Component(name, process, health_url)


def wait_healthy(component: Component, timeout: float = 90.0) -> None:
    """Wait until the component's health URL answers 200, or stop it and raise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if component.process.poll() is not None:
            raise RuntimeError(
                f"{component.name} exited with code {component.process.returncode} while starting"
            )
        try:
            if httpx.get(component.health_url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    component.stop()
    raise RuntimeError(f"{component.name} did not become healthy within {timeout:.0f}s")


@dataclass
class Stack:
    pair: PgPair
    backend: Component
    gateway: Component
    env: dict[str, str]
    mcp_url: str
    backend_url: str
    extra: list[Component] = field(default_factory=list)


def stack_env(pair: PgPair, backend_port: int, jwt_secret: str) -> dict[str, str]:
    return {
        "DATABASE_URL": pair.database_url,
        "READ_DATABASE_URL": pair.read_database_url,
        "FASTAPI_BASE_URL": f"http://127.0.0.1:{backend_port}",
        "JWT_SECRET": jwt_secret,
        "MCP_TRANSPORT": "http",
        "MCP_HOST": "127.0.0.1",
    }


@contextmanager
def running_stack(
    root: Path,
    mcp_port: int | None = None,
    backend_port: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """Everything `taskgate dev` runs, stopped in reverse order on exit."""
    backend_port = backend_port or free_port()
    mcp_port = mcp_port or free_port()
    with ExitStack() as stack:
        _say(f"starting PostgreSQL primary and streaming replica in {root}")
        pair = PgPair(root)
        stack.callback(pair.stop)
        pair.start()
        _say(f"primary on 127.0.0.1:{pair.primary_port}, replica on 127.0.0.1:{pair.replica_port}")
        _say("migrating the primary")
        upgrade_to_head(pair.database_url)
        backend_url = f"http://127.0.0.1:{backend_port}"
        gateway_url = f"http://127.0.0.1:{mcp_port}"
        env = {
            **stack_env(pair, backend_port, secrets.token_urlsafe(32)),
            # The gateway's audience: the backend issues tokens for it, the gateway checks them.
            "MCP_PUBLIC_URL": f"{gateway_url}/mcp",
            **(extra_env or {}),
        }
        _say(f"starting backend on {backend_url} and gateway on {gateway_url}")
        # Both start at once: each takes about a second to import.
        backend = spawn_component(
            "backend", ["backend", "--port", str(backend_port)], env, f"{backend_url}/healthz"
        )
        stack.callback(backend.stop)
        gateway = spawn_component(
            "gateway",
            ["gateway", "--transport", "http", "--port", str(mcp_port)],
            env,
            f"{gateway_url}/healthz",
        )
        stack.callback(gateway.stop)
        wait_healthy(backend)
        wait_healthy(gateway)
        yield Stack(pair, backend, gateway, env, f"{gateway_url}/mcp", backend_url)


def demo_token(backend_url: str, mcp_url: str) -> str:
    """The demo user's token for the gateway at mcp_url (RFC 8707 `resource`)."""
    password = secrets.token_urlsafe(16)
    with httpx.Client(base_url=backend_url, timeout=10) as http:
        http.post("/api/v1/users", json={"email": DEMO_EMAIL, "password": password})
        form = {"username": DEMO_EMAIL, "password": password, "resource": mcp_url}
        reply = http.post("/api/v1/auth/token", data=form)
        reply.raise_for_status()
        token: str = reply.json()["access_token"]
        return token


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_dev(mcp_port: int, backend_port: int) -> int:
    started = time.monotonic()
    # Ctrl-C must work even when a parent shell started us with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    root = Path(tempfile.mkdtemp(prefix="taskgate-dev-"))
    try:
        with running_stack(root, mcp_port=mcp_port, backend_port=backend_port) as stack:
            token = demo_token(stack.backend_url, stack.env["MCP_PUBLIC_URL"])
            _say(f"ready in {time.monotonic() - started:.1f}s; press Ctrl-C to stop")
            print(f"MCP endpoint: {stack.mcp_url}", flush=True)
            print(f"Bearer token: {token}", flush=True)
            while True:
                for component in (stack.backend, stack.gateway):
                    if component.process.poll() is not None:
                        _say(f"{component.name} exited with code {component.process.returncode}")
                        return 1
                time.sleep(0.5)
    except KeyboardInterrupt:
        _say("stopping")
        return 0
    except (PgPairError, RuntimeError) as exc:
        _say(f"error: {exc}")
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
        _say("stopped")
