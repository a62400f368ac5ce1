"""Fixtures shared by every test level: a real PostgreSQL primary and streaming replica, and a
backend process on them."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.migrate import upgrade_to_head
from shared.settings import Settings
from taskgate.pgpair import PgPair
from tests.support.config import TEST_JWT_SECRET, TEST_MCP_URL
from tests.support.processes import running_backend


@pytest.fixture(scope="session", autouse=True)
def _test_mcp_public_url() -> Iterator[None]:
    """Backends and gateways that tests spawn inherit the shared audience from the environment."""
    before = os.environ.get("MCP_PUBLIC_URL")
    os.environ["MCP_PUBLIC_URL"] = TEST_MCP_URL
    yield
    if before is None:
        os.environ.pop("MCP_PUBLIC_URL", None)
    else:
        os.environ["MCP_PUBLIC_URL"] = before


@pytest.fixture(scope="session")
def pg_pair() -> Iterator[PgPair]:
    """One migrated primary + replica for the whole run, on free loopback ports."""
    root = Path(tempfile.mkdtemp(prefix="taskgate-test-pg-"))
    pair = PgPair(root)
    try:
        pair.start()
        upgrade_to_head(pair.database_url)
        yield pair
    finally:
        pair.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(pg_pair: PgPair) -> Settings:
    return Settings(
        _env_file=None,
        database_url=pg_pair.database_url,
        read_database_url=pg_pair.read_database_url,
        jwt_secret=TEST_JWT_SECRET,
        mcp_public_url=TEST_MCP_URL,
        cache_url="memory://",
    )


@pytest.fixture(scope="session")
def backend_url(settings: Settings) -> Iterator[str]:
    """The real backend as a process on the test pair, shared by the suites that need one."""
    env = {"DATABASE_URL": settings.database_url, "READ_DATABASE_URL": settings.read_database_url}
    with running_backend(env) as url:
        yield url
