"""In-process gateways over the test pair and a backend process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from mcp import Client
from pydantic import SecretStr

from gateway.server import build_server
from shared.settings import Settings
from tests.support.agents import Agent, sign_up


def gateway_settings(settings: Settings, backend_url: str, **changes: Any) -> Settings:
    return settings.model_copy(update={"fastapi_base_url": backend_url, **changes})


@asynccontextmanager
async def gateway_with(
    settings: Settings, backend_url: str, **changes: Any
) -> AsyncIterator[Client]:
    """An in-process gateway with these settings changed, and an MCP client on it."""
    server, _ = build_server(gateway_settings(settings, backend_url, **changes))
    async with Client(server) as client:
        yield client


def gateway_as(
    settings: Settings, backend_url: str, agent: Agent
) -> AbstractAsyncContextManager[Client]:
    """An in-process gateway whose stdio-style credentials are the agent's token."""
    return gateway_with(settings, backend_url, gateway_token=SecretStr(agent.token))


@asynccontextmanager
async def gateway_for_new_agent(settings: Settings, backend_url: str) -> AsyncIterator[Client]:
    """`gateway_as` for an agent signed up for this test alone."""
    async with gateway_as(settings, backend_url, sign_up(backend_url)) as client:
        yield client
