"""Scale-out on real servers: a primary with two streaming replicas, a backend, a shared Redis,
and gateway processes reading through them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from readmodel.cache import ReadCache, TtlPolicy, build_cache
from readmodel.engine import create_read_engine
from readmodel.replicas import ReplicaSet
from shared.settings import Settings
from taskgate.pgpair import READER_ROLE, PgPair
from tests.support.agents import Agent, sign_up
from tests.support.clusters import migrated_cluster
from tests.support.config import TEST_JWT_SECRET
from tests.support.processes import running_backend
from tests.support.readmodel import TaskReader
from tests.support.redis import RedisServer, running_redis
from tests.support.scale import (
    MakeReader,
)


@pytest.fixture(scope="session")
def pair2() -> Iterator[PgPair]:
    """One migrated primary with two streaming replicas, for this suite."""
    with migrated_cluster("taskgate-test-pg2-", replicas=2) as pair:
        yield pair


@pytest.fixture(scope="session")
def backend_url(pair2: PgPair) -> Iterator[str]:
    with running_backend({"DATABASE_URL": pair2.database_url}, timeout=120) as url:
        yield url


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """This suite's own Redis: its marks hash holds a floor from this suite's primary, which a
    Redis shared with the one-replica suites (another primary, other positions) would break."""
    with running_redis() as server:
        yield server


@pytest.fixture(scope="session")
def agents(backend_url: str) -> list[Agent]:
    return [sign_up(backend_url) for _ in range(20)]


@pytest.fixture
async def make_reader(pair2: PgPair) -> AsyncIterator[MakeReader]:
    opened: list[TaskReader] = []
    settings = Settings(_env_file=None, jwt_secret=TEST_JWT_SECRET)

    async def make(servers: bool) -> TaskReader:
        """In-process readers over both replicas (servers) or the first one's URL alone."""
        urls = [pair2.url(READER_ROLE, replica=i) for i in range(2 if servers else 1)]
        replicas = ReplicaSet.of(
            urls,
            lambda url: create_read_engine(settings, url),
            servers=servers,
            max_lag_seconds=30,
            retry_max_seconds=30,
        )
        reader = TaskReader(
            replicas,
            ReadCache(build_cache("memory://"), TtlPolicy(0)),
            cursor_secret=b"x" * 32,
            ryw_wait_timeout=5,
            replica_timeout=5,
        )
        opened.append(reader)
        return reader

    yield make
    for reader in opened:
        for replica in reader.replicas.replicas:
            await replica.engine.dispose()
