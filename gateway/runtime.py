"""What a gateway process holds open: the backend client, the read model and the caller identity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from gateway.backend_client import BackendClient, create_http_client
from gateway.identity import Identity
from gateway.ratelimit import Buckets, build_buckets
from readmodel.cache import ReadCache, TtlPolicy, build_cache, is_redis
from readmodel.engine import create_read_engine
from readmodel.marks import Marks, RedisMarks
from readmodel.reader import TaskReader
from readmodel.replicas import ReplicaSet
from shared.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    backend: BackendClient
    reader: TaskReader
    identity: Identity
    buckets: Buckets | None  # tool calls per user; None when RATE_LIMIT_PER_USER is 0


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    http = create_http_client(settings)
    backend = BackendClient(http)
    replicas = ReplicaSet.of(
        settings.replica_urls,
        lambda url: create_read_engine(settings, url),
        servers=settings.replicas_are_servers,
        max_lag_seconds=settings.replica_max_lag_seconds,
        retry_max_seconds=settings.replica_retry_max_seconds,
    )
    fallback = (
        create_read_engine(settings, settings.read_fallback_database_url)
        if settings.read_fallback_database_url
        else None
    )
    cache = ReadCache(
        build_cache(settings.cache_url, max_bytes=settings.cache_max_bytes),
        TtlPolicy(settings.cache_ttl, settings.cache_ttl_overrides),
        max_entry_bytes=settings.cache_max_entry_bytes,
    )
    # Marks are shared where the cache is; the primary's position stands in for lost ones.
    shared_marks = RedisMarks.from_url(settings.cache_url) if is_redis(settings.cache_url) else None
    marks = Marks(shared_marks, primary_position=backend.wal_position)
    try:
        reader = TaskReader(
            replicas,
            cache,
            cursor_secret=settings.jwt_secret.get_secret_value().encode(),
            ryw_wait_timeout=settings.ryw_wait_timeout,
            replica_timeout=settings.replica_timeout,
            fallback=fallback,
            marks=marks,
        )
        identity = Identity(settings, backend)
        await identity.start()
        await marks.prepare()
        buckets = build_buckets(settings, cache.cache, cache.shared)
        yield Runtime(settings, backend, reader, identity, buckets)
    finally:
        await http.aclose()
        for replica in replicas.replicas:
            await replica.engine.dispose()
        if fallback is not None:
            await fallback.dispose()
        await cache.close()
        await marks.close()


class RuntimeRef:
    """The runtime of a server built before its lifespan opens it. Tools read it per call."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runtime: Runtime | None = None

    def get(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("the gateway's lifespan has not started")
        return self._runtime

    @asynccontextmanager
    async def lifespan(self, _server: object) -> AsyncIterator[None]:
        async with open_runtime(self.settings) as runtime:
            self._runtime = runtime
            try:
                yield
            finally:
                self._runtime = None
