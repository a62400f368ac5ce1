"""A stack of its own for fault tests (they kill and stop its parts, never the shared `stack`):
the pair, the backend, and three gateway processes that differ only in their read settings."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from taskgate.devstack import Component, Stack, running_stack, spawn_component, wait_healthy
from taskgate.pgpair import READER_ROLE, free_port
from tests.support.config import TEST_MCP_URL
from tests.support.redis import RedisServer, running_redis

# Small backend timeouts, so "answers within its timeout" is checked against a bound that a
# hang would break. REPLICA_TIMEOUT stays at its default: a dead replica answers within 2 s.
FAULT_ENV = {
    "BACKEND_CONNECT_TIMEOUT": "1",
    "BACKEND_READ_TIMEOUT": "3",
    "CACHE_TTL": "0",  # every read reaches the replica, so replica faults show
    # A loaded test machine can lag the replica past the default 1 s; a refusal for lag is not
    # what these tests are about (the lag test still sees it, after this longer wait).
    "RYW_WAIT_TIMEOUT": "5",
    "LOG_LEVEL": "WARNING",
    "REPLICA_LAG_SAMPLE_SECONDS": "1",
}
WRITE_BOUND = 2 * (1 + 3) + 1.0  # two attempts (a keyed create is retried once), plus slack


@dataclass
class FaultStack:
    stack: Stack
    strict: str  # MCP URL of the stack's gateway: no fallback, no cache
    fallback: str  # reads fall back to the primary (as the reader role) past RYW_WAIT_TIMEOUT
    cached: str  # caches in the private Redis below, CACHE_TTL 30
    redis: RedisServer
    _started: list[Component] = field(default_factory=list)

    @property
    def backend_url(self) -> str:
        return self.stack.backend_url

    def kill_backend(self) -> None:
        self.stack.backend.process.kill()
        self.stack.backend.process.wait()

    def start_backend(self) -> None:
        """A new backend process on the same port, as a supervisor would restart it."""
        port = urlsplit(self.backend_url).port
        backend = spawn_component(
            "backend", ["backend", "--port", str(port)], self.stack.env,
            f"{self.backend_url}/healthz",
        )  # fmt: skip
        self._started.append(backend)
        wait_healthy(backend, timeout=120)
        self.stack.backend = backend


def _gateway(stack: Stack, env: dict[str, str]) -> tuple[Component, str]:
    port = free_port()
    component = spawn_component(
        "gateway",
        ["gateway", "--transport", "http", "--port", str(port)],
        {**stack.env, **env},
        f"http://127.0.0.1:{port}/healthz",
    )
    return component, f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def faults() -> Iterator[FaultStack]:
    root = Path(tempfile.mkdtemp(prefix="taskgate-test-faults-"))
    try:
        with running_redis() as redis, ExitStack() as cleanup:
            stack = cleanup.enter_context(
                running_stack(root, extra_env={**FAULT_ENV, "MCP_PUBLIC_URL": TEST_MCP_URL})
            )
            fallback, fallback_url = _gateway(
                stack,
                {"READ_FALLBACK_DATABASE_URL": stack.pair.url(READER_ROLE),
                 "RYW_WAIT_TIMEOUT": "0.3"},
            )  # fmt: skip
            cleanup.callback(fallback.stop)
            cached, cached_url = _gateway(stack, {"CACHE_URL": redis.url, "CACHE_TTL": "30"})
            cleanup.callback(cached.stop)
            for component in (fallback, cached):
                wait_healthy(component, timeout=120)
            faults = FaultStack(stack, stack.mcp_url, fallback_url, cached_url, redis)
            try:
                yield faults
            finally:
                for backend in faults._started:
                    backend.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
