"""What operators see of a gateway: health, metrics, the admin API, and their background tasks.

build_server creates one Operations next to its RuntimeRef and installs it on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from gateway.admin import AdminApi, add_admin_routes
from gateway.health import add_health_routes
from gateway.metrics import (
    GatewayMetrics,
    ReadModelCollector,
    ToolCallObserver,
    instrument_backend_client,
)
from gateway.metrics_endpoint import MetricsEndpoint
from gateway.runtime import RuntimeRef
from readmodel.lag import replica_lag
from readmodel.replicas import Replica, ReplicaSet
from readmodel.ttl import TtlStore
from shared.settings import Settings

if TYPE_CHECKING:
    from gateway.server import TaskgateMCP

log = logging.getLogger(__name__)


class Operations:
    def __init__(self, settings: Settings, ref: RuntimeRef) -> None:
        self.settings = settings
        self.ref = ref
        self.registry = CollectorRegistry()
        self.metrics = GatewayMetrics(self.registry)
        self.registry.register(ReadModelCollector(ref))
        self.observer = ToolCallObserver(self.metrics, tools=())
        self.admin = AdminApi(settings, ref)
        self.metrics_endpoint = MetricsEndpoint(settings, self.registry)

    def install(self, server: TaskgateMCP) -> None:
        server.tool_observer = self.observer
        add_health_routes(server, self.ref)
        add_admin_routes(server, self.admin)
        server.custom_route("/metrics", methods=["GET"])(self.metrics_endpoint.scrape)

    async def sample_replica_lag(self) -> None:
        """Refresh each replica's lag gauges and standing in the replica set, until cancelled."""
        while True:
            replicas = self.ref.get().reader.replicas
            await asyncio.gather(*(self._sample(replicas, r) for r in replicas.replicas))
            await asyncio.sleep(self.settings.replica_lag_sample_seconds)

    async def _sample(self, replicas: ReplicaSet, replica: Replica) -> None:
        try:
            async with asyncio.timeout(self.settings.replica_timeout):
                lag = await replica_lag(replica.engine)
        except Exception as exc:  # the replica is down: say so, keep sampling
            log.debug("replica %s lag sample failed: %s", replica.label, type(exc).__name__)
            replicas.sampled(replica, None)
            self.metrics.replica_up.labels(replica.label).set(0)
            return
        replicas.sampled(replica, lag)
        self.metrics.replica_up.labels(replica.label).set(1)
        self.metrics.replica_lag_bytes.labels(replica.label).set(lag.bytes)
        self.metrics.replica_lag_seconds.labels(replica.label).set(lag.seconds)

    async def _shared_ttl_store(self) -> TtlStore | None:
        if not self.settings.cache_url.startswith(("redis://", "rediss://")):
            return None  # a memory cache is this process's alone: nothing to share
        cache = self.ref.get().reader.cache
        store = TtlStore(cache.cache, cache.ttl, self.settings.cache_ttl_sync_seconds)
        try:
            await store.refresh()  # join the fleet's policy, if an operator set one
        except Exception as exc:
            log.warning("cannot read the shared TTL policy at start (%s)", type(exc).__name__)
        return store

    @asynccontextmanager
    async def _serving_metrics(self) -> AsyncIterator[None]:
        with self.metrics_endpoint.own_port():
            yield

    @asynccontextmanager
    async def lifespan(self, server: Any) -> AsyncIterator[None]:
        async with self.ref.lifespan(server), self._serving_metrics():
            rt = self.ref.get()
            self.observer.tools = {tool.name for tool in await server.list_tools()}
            instrument_backend_client(rt.backend.http, self.metrics)
            self.admin.store = await self._shared_ttl_store()
            tasks = [asyncio.create_task(self.sample_replica_lag())]
            if self.admin.store is not None:
                tasks.append(asyncio.create_task(self.admin.store.run()))
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                self.admin.store = None
