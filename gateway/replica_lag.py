"""Each replica's lag, sampled in the background: its gauges, and its standing in the replica set
(a lagging or unreachable replica is read from last), so a read or a scrape never waits on it."""

from __future__ import annotations

import asyncio
import logging

from gateway.metrics import GatewayMetrics
from readmodel.lag import replica_lag
from readmodel.replicas import Replica, ReplicaSet

log = logging.getLogger(__name__)


async def sample_replica_lag(
    replicas: ReplicaSet, metrics: GatewayMetrics, every_seconds: float, within: float
) -> None:
    """Refresh each replica's lag gauges and standing, until cancelled."""
    while True:
        await asyncio.gather(*(_sample(replicas, r, metrics, within) for r in replicas.replicas))
        await asyncio.sleep(every_seconds)


async def _sample(
    replicas: ReplicaSet, replica: Replica, metrics: GatewayMetrics, within: float
) -> None:
    try:
        async with asyncio.timeout(within):
            lag = await replica_lag(replica.engine)
    except Exception as exc:  # the replica is down: say so, keep sampling
        log.debug("replica %s lag sample failed: %s", replica.label, type(exc).__name__)
        replicas.sampled(replica, None)
        metrics.replica_up.labels(replica.label).set(0)
        return
    replicas.sampled(replica, lag)
    metrics.replica_up.labels(replica.label).set(1)
    metrics.replica_lag_bytes.labels(replica.label).set(lag.bytes)
    metrics.replica_lag_seconds.labels(replica.label).set(lag.seconds)
