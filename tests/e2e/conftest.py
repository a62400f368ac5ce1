"""The whole system on real sockets: pair, backend and gateway, as `taskgate dev` runs them."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from taskgate.devstack import Stack, running_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="taskgate-test-e2e-"))
    try:
        with running_stack(root) as running:
            yield running
    finally:
        shutil.rmtree(root, ignore_errors=True)


def sign_up(backend_url: str) -> tuple[int, str]:
    """A new user and their bearer token, through the backend's REST API."""
    email = f"agent-{uuid.uuid4().hex[:12]}@example.com"
    password = uuid.uuid4().hex
    with httpx.Client(base_url=backend_url, timeout=10) as http:
        user = http.post("/api/v1/users", json={"email": email, "password": password})
        user.raise_for_status()
        token = http.post("/api/v1/auth/token", data={"username": email, "password": password})
        token.raise_for_status()
        return int(user.json()["id"]), str(token.json()["access_token"])


@asynccontextmanager
async def mcp_session(url: str, token: str | None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client
