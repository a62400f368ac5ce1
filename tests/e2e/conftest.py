"""The whole system on real sockets: pair, backend and gateway, as `taskgate dev` runs them."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from taskgate.devstack import Stack, running_stack
from tests.conftest import TEST_MCP_URL
from tests.conftest import sign_up as sign_up_agent


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="taskgate-test-e2e-"))
    try:
        with running_stack(root, extra_env={"MCP_PUBLIC_URL": TEST_MCP_URL}) as running:
            yield running
    finally:
        shutil.rmtree(root, ignore_errors=True)


def sign_up(backend_url: str) -> tuple[int, str]:
    """A new user's id and bearer token, through the backend's REST API."""
    agent = sign_up_agent(backend_url)
    return agent.id, agent.token


@asynccontextmanager
async def mcp_session(url: str, token: str | None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client
