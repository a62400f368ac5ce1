"""Fixtures shared by every test level: a real PostgreSQL primary and streaming replica, and a
backend process on them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import Settings
from taskgate.pgpair import PgPair
from tests.support.browser import chromium
from tests.support.clusters import migrated_cluster
from tests.support.config import TEST_JWT_SECRET, TEST_MCP_URL
from tests.support.npm import npm_ci
from tests.support.ports import free_port
from tests.support.processes import running_backend
from tests.support.redis import RedisServer, running_redis

TESTS = Path(__file__).parent
# What a test needs besides Python, by where it lives, by the fixtures it uses (pytest lists
# every fixture a test needs, through other fixtures too) and by the helpers its module takes.
# The fast part needs none of it: uv run pytest -m "not (e2e or cluster or node or browser)"
MARKERS_BY_PATH = {
    "e2e": ("e2e",),
    "oauth": ("e2e",),
    "conformance": ("e2e",),
    "reliability": ("e2e",),
    "integration/test_pg_pair_start.py": ("cluster",),
    "integration/test_embedded_postgres.py": ("cluster",),
}
MARKERS_BY_FIXTURE = {
    "pg_pair": "cluster",  # the session's primary and replica
    "pair2": "cluster",  # a primary with two replicas
    "stack": "cluster",  # tests/e2e: a pair, a backend and a gateway of their own
    "ops": "cluster",
    "faults": "cluster",
    "conformance_cli": "node",  # its conftest runs npm ci
    "node": "node",
}
MARKERS_BY_HELPER = {
    chromium: "browser",  # a headless Chromium
    npm_ci: "node",  # npm ci, then Node processes
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        where = item.path.relative_to(TESTS).as_posix()
        names = {
            marker
            for path, markers in MARKERS_BY_PATH.items()
            if where == path or where.startswith(f"{path}/")
            for marker in markers
        }
        names.update(
            marker
            for fixture, marker in MARKERS_BY_FIXTURE.items()
            if fixture in getattr(item, "fixturenames", ())
        )
        module = vars(getattr(item, "module", None) or object())
        names.update(
            marker
            for helper, marker in MARKERS_BY_HELPER.items()
            if any(value is helper for value in module.values())
        )
        for name in sorted(names):
            item.add_marker(name)


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
        # Nothing listens there: a test never reaches whatever else runs on :8000 (a dev stack);
        # the tests that need a backend take backend_url.
        fastapi_base_url=f"http://127.0.0.1:{free_port()}",
    )


@pytest.fixture(scope="session")
def backend_url(settings: Settings) -> Iterator[str]:
    """The real backend as a process on the test pair, shared by the suites that need one."""
    env = {"DATABASE_URL": settings.database_url, "READ_DATABASE_URL": settings.read_database_url}
    with running_backend(env) as url:
        yield url
