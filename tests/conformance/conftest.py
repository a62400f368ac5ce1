"""A gateway for the official MCP conformance suite, and the suite itself (pinned by
package-lock.json, installed here with `npm ci` when node_modules is missing)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import Settings
from tests.support.processes import running_gateway

HERE = Path(__file__).parent
CLI = HERE / "node_modules" / ".bin" / "conformance"


def npm_ci(folder: Path, installed: Path) -> None:
    """`npm ci` in `folder` (its package-lock.json pins everything) unless `installed` exists."""
    if not installed.exists():
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed for the MCP conformance suite (Node 20 or later)"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=folder, check=True, timeout=600)


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
