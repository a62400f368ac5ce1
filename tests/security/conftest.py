"""Hostile-input fixtures: the real backend process on the real pair, and an in-process gateway
that a synchronous Hypothesis test can call (its MCP client lives on a loop in another thread)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from shared.settings import Settings
from tests.support.agents import Agent, sign_up
from tests.support.gateways import gateway_settings
from tests.support.processes import running_gateway
from tests.support.threaded_client import ThreadedClient


@pytest.fixture(scope="module")
def agent(backend_url: str) -> Agent:
    return sign_up(backend_url)


@pytest.fixture(scope="module")
def gateway(settings: Settings, backend_url: str, agent: Agent) -> Iterator[ThreadedClient]:
    configured = gateway_settings(settings, backend_url, gateway_token=SecretStr(agent.token))
    client = ThreadedClient(configured)
    client.start()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def http_gateway(settings: Settings, backend_url: str) -> Iterator[str]:
    """A gateway process on streamable HTTP in token mode; yields its MCP URL."""
    with running_gateway(settings, backend_url) as url:
        yield url
