"""What a gateway process holds open: the backend client, the read model, the caller identity,
the rate-limit buckets and the shared TTL policy; and the one holder its tools and routes read."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from gateway.app_auth import AppAuthFor
from gateway.backend_client import BackendClient, ResponseHook, create_http_client
from gateway.identity import Identity
from gateway.ratelimit import Buckets, build_buckets
from readmodel.cache import ReadCache, TtlPolicy, build_cache, is_redis
from readmodel.engine import create_read_engine
from readmodel.lsn import format_lsn
from readmodel.marks import Marks, RedisMarks
from readmodel.reader import Reader
from readmodel.reads import ReadTools
from readmodel.replicas import ReplicaSet
from readmodel.ttl import TtlStore
from shared.api import LIVENESS_PATH
from shared.settings import Settings
from shared.user_ids import INT_IDS, UserIds

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    backend: BackendClient
    reader: Reader
    identity: Identity
    buckets: Buckets | None  # tool calls per user; None when RATE_LIMIT_PER_USER is 0
    ttl_store: TtlStore | None  # the fleet's TTL policy, with a shared (Redis) cache only

    async def primary_position(self) -> str | None:
        """The primary's WAL position now, for a write whose reply carried no commit position;
        None (the write leaves no mark) when the app cannot say."""
        try:
            return format_lsn(await self.backend.wal_position())
        except Exception as exc:
            log.warning("cannot ask the app for the primary's position (%s)", type(exc).__name__)
            return None


async def _shared_ttl_store(settings: Settings, cache: ReadCache) -> TtlStore | None:
    if not is_redis(settings.cache_url):
        return None  # a memory cache is this process's alone: nothing to share
    store = TtlStore(cache.cache, cache.ttl, settings.cache_ttl_sync_seconds)
    try:
        await store.refresh()  # join the fleet's policy, if an operator set one
    except Exception as exc:
        log.warning("cannot read the shared TTL policy at start (%s)", type(exc).__name__)
    return store


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    reads: ReadTools,
    on_response: Sequence[ResponseHook] = (),
    auth_for: AppAuthFor | None = None,
    liveness_path: str = LIVENESS_PATH,
    user_ids: UserIds = INT_IDS,
) -> AsyncIterator[Runtime]:
    """`reads`: the app spec's read tools; `on_response`: httpx hooks for every backend answer
    (the metrics count 5xx); `auth_for`: how the spec says to call the app; `liveness_path`:
    the app's health route, which /readyz asks; `user_ids`: the kind of its user ids."""
    http = create_http_client(settings, on_response)
    backend = BackendClient(http, liveness_path)
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
        reader = Reader(
            reads,
            replicas,
            cache,
            cursor_secret=settings.jwt_secret.get_secret_value().encode(),
            ryw_wait_timeout=settings.ryw_wait_timeout,
            replica_timeout=settings.replica_timeout,
            fallback=fallback,
            marks=marks,
        )
        identity = Identity(settings, backend, auth_for, user_ids)
        await identity.start()
        await marks.prepare()
        buckets = build_buckets(settings, cache.cache, cache.shared)
        ttl_store = await _shared_ttl_store(settings, cache)
        yield Runtime(settings, backend, reader, identity, buckets, ttl_store)
    finally:
        await http.aclose()
        for replica in replicas.replicas:
            await replica.engine.dispose()
        if fallback is not None:
            await fallback.dispose()
        await cache.close()
        await marks.close()


class RuntimeRef:
    """The running gateway's Runtime. The MCP SDK takes the server's lifespan at construction,
    and tools and routes are registered before it runs, so they hold this and read it per call;
    the composition root's lifespan fills it while the runtime is open."""

    def __init__(self) -> None:
        self._runtime: Runtime | None = None

    def get(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("the gateway's lifespan has not started")
        return self._runtime

    @contextmanager
    def holding(self, runtime: Runtime) -> Iterator[Runtime]:
        self._runtime = runtime
        try:
            yield runtime
        finally:
            self._runtime = None
