"""Read-model fixtures: readers on the real replica, users and tasks seeded on the primary."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from readmodel.cache import ReadCache, TtlPolicy, build_cache, is_redis
from readmodel.engine import create_read_engine
from readmodel.lsn import format_lsn
from readmodel.marks import Marks, RedisMarks
from shared.settings import Settings
from taskgate.pgpair import READER_ROLE, PgPair
from tests.support.readmodel import (
    MakeReader,
    TaskReader,
    one_replica,
    primary_position_of,
    wait_replayed,
)
from tests.support.redis import RedisServer


@pytest.fixture(params=["memory", "redis"])
def cache_url(request: pytest.FixtureRequest, redis_server: RedisServer) -> str:
    """Each test that takes it runs on the in-process cache and on a real Redis."""
    return redis_server.url if request.param == "redis" else "memory://"


@pytest.fixture
async def make_reader(settings: Settings, pg_pair: PgPair) -> AsyncIterator[MakeReader]:
    """Builds TaskReaders on the replica; each gets its own engine and cache, closed after."""
    opened: list[TaskReader] = []

    async def make(
        cache_url: str = "memory://",
        cache_ttl: float = 60.0,
        overrides: dict[str, float] | None = None,
        ryw_wait_timeout: float = 5.0,
        replica_timeout: float | None = None,
        fallback: bool = False,
    ) -> TaskReader:
        replica = create_read_engine(settings, settings.read_database_url)
        shared_marks = RedisMarks.from_url(cache_url) if is_redis(cache_url) else None
        reader = TaskReader(
            one_replica(replica),
            ReadCache(build_cache(cache_url), TtlPolicy(cache_ttl, overrides)),
            cursor_secret=settings.jwt_secret.get_secret_value().encode(),
            ryw_wait_timeout=ryw_wait_timeout,
            replica_timeout=replica_timeout or settings.replica_timeout,
            fallback=create_read_engine(settings, pg_pair.url(READER_ROLE)) if fallback else None,
            marks=Marks(shared_marks, primary_position=primary_position_of(pg_pair)),
        )
        opened.append(reader)
        # As a gateway does at start: the floor is the primary's position now, and the
        # replica is given time to pass it, so tests start from a caught-up replica.
        await reader.marks.prepare()
        await asyncio.to_thread(wait_replayed, pg_pair, format_lsn(reader.marks.local.floor))
        return reader

    yield make
    for reader in opened:
        await reader.replica.dispose()
        if reader.fallback is not None:
            await reader.fallback.dispose()
        await reader.cache.close()
        await reader.marks.close()
