"""A gateway for the official MCP conformance suite, and the suite itself (pinned by
package-lock.json, installed here with `npm ci` when node_modules is missing)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import Settings
from tests.support.npm import npm_ci
from tests.support.processes import running_gateway

HERE = Path(__file__).parent
CLI = HERE / "node_modules" / ".bin" / "conformance"


@pytest.fixture(scope="session")
def conformance_cli() -> Path:
    npm_ci(HERE, CLI)
    return CLI


@pytest.fixture(scope="module")
def trusted_gateway(settings: Settings, backend_url: str) -> Iterator[str]:
    """A gateway in AUTH_MODE=user_param: the suite sends no bearer token, so this is the one
    mode it can reach. Everything else (transport, Host/Origin checks, tools) is as deployed."""
    with running_gateway(settings, backend_url, {"AUTH_MODE": "user_param"}) as url:
        yield url
