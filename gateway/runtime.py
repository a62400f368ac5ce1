"""What a gateway process holds open: the backend client, the read model and the caller identity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from gateway.backend_client import BackendClient, create_http_client
from gateway.identity import Identity
from gateway.ratelimit import Buckets, build_buckets
from readmodel.cache import ReadCache, TtlPolicy, build_cache
from readmodel.engine import create_read_engine
from readmodel.reader import TaskReader
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
    replica = create_read_engine(settings, settings.read_database_url)
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
    try:
        reader = TaskReader(
            replica,
            cache,
            cursor_secret=settings.jwt_secret.get_secret_value().encode(),
            ryw_wait_timeout=settings.ryw_wait_timeout,
            replica_timeout=settings.replica_timeout,
            fallback=fallback,
        )
        backend = BackendClient(http)
        identity = Identity(settings, backend)
        await identity.start()
        buckets = build_buckets(settings, cache.cache, cache.shared)
        yield Runtime(settings, backend, reader, identity, buckets)
    finally:
        await http.aclose()
        await replica.dispose()
        if fallback is not None:
            await fallback.dispose()
        await cache.close()


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
