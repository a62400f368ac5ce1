"""The whole system on real sockets, with the means to break its parts one at a time."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from taskgate.devstack import Component, Stack, spawn_component, wait_healthy
from tests.support.redis import RedisServer

# Small backend timeouts, so "answers within its timeout" is checked against a bound that a
# hang would break. REPLICA_TIMEOUT stays at its default: a dead replica answers within 2 s.
FAULT_ENV = {
    "BACKEND_CONNECT_TIMEOUT": "1",
    "BACKEND_READ_TIMEOUT": "3",
    "CACHE_TTL": "0",  # every read reaches the replica, so replica faults show
    # A loaded test machine can lag the replica past the default 1 s; a refusal for lag is not
    # what these tests are about (the lag test still sees it, after this longer wait).
    "RYW_WAIT_TIMEOUT": "5",
    # The agents here call back to back; once the backend is gone a write fails in a
    # millisecond, and an agent passes the default 50 calls/s. Limits have tests of their own.
    "RATE_LIMIT_PER_USER": "1000",
    "RATE_LIMIT_BURST": "2000",
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
