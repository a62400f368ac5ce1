"""A stack of its own for fault tests (they kill and stop its parts, never the shared `stack`):
the pair, the backend, and three gateway processes that differ only in their read settings."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from taskgate.devstack import Component, Stack, running_stack, spawn_component, wait_healthy
from taskgate.pgpair import READER_ROLE
from tests.support.config import TEST_MCP_URL
from tests.support.fault_stack import FAULT_ENV, FaultStack
from tests.support.ports import free_port
from tests.support.redis import running_redis


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
