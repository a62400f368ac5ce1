"""Fixtures shared by every test level: a real PostgreSQL primary and streaming replica, and a
backend process on them."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from shared.settings import Settings
from taskgate.pgpair import PgPair
from tests.support.clusters import migrated_cluster
from tests.support.config import TEST_JWT_SECRET, TEST_MCP_URL
from tests.support.processes import running_backend
from tests.support.redis import RedisServer, running_redis

# What every process that tests spawn inherits: the shared audience, and sign-ups and client
# registrations without a per-address limit (every test signs up its users from 127.0.0.1; the
# limits have their own tests, which set them).
SPAWNED_ENV = {
    "MCP_PUBLIC_URL": TEST_MCP_URL,
    "SIGNUP_ADDRESS_PER_HOUR": "0",
    "OAUTH_REGISTRATIONS_PER_HOUR": "0",
}


@pytest.fixture(scope="session", autouse=True)
def _spawned_env() -> Iterator[None]:
    before = {name: os.environ.get(name) for name in SPAWNED_ENV}
    os.environ.update(SPAWNED_ENV)
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def pg_pair() -> Iterator[PgPair]:
    """One migrated primary + replica for the whole run, on free loopback ports."""
    with migrated_cluster("taskgate-test-pg-") as pair:
        yield pair


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the run, on a free loopback port."""
    with running_redis() as server:
        yield server


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
