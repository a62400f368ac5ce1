"""Read-your-writes with two replicas and two gateways sharing Redis, one replica lagging.

1,000 write-then-read pairs through alternating gateways, on the real primary, its two
streaming replicas, the backend and Redis; then the same behind one READ_DATABASE_URL whose
proxy alternates connections over the two replicas, as a pooler or load balancer would.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from taskgate.pgpair import READER_ROLE, PgPair
from tests.integration.scale.tcp_proxy import AlternatingProxy
from tests.support.agents import Agent
from tests.support.faults import replay_paused
from tests.support.redis import RedisServer
from tests.support.scale import replica_reads, running_gateways, write_read_pairs

log = logging.getLogger(__name__)
PAIRS = 1000
# What these tests prove is that no read misses a write and how reads spread, not how fast a
# replica answers: on a machine with every core busy, a connect, a query or a switch away from
# the paused replica's connection can take longer than the default bounds (REPLICA_TIMEOUT
# 1.5 s, RYW_WAIT_TIMEOUT 1 s), and the read then fairly answers replica_unavailable. The paused
# replica never catches up within a phase, so a longer bound cannot hide a read stuck on it.
PATIENT = {"RYW_WAIT_TIMEOUT": "5", "REPLICA_TIMEOUT": "5"}


def _shares(reads: Mapping[Any, int]) -> dict[Any, float]:
    total = sum(reads.values()) or 1
    return {label: count / total for label, count in reads.items()}


async def test_reads_spread_over_caught_up_replicas_and_never_miss_a_write_while_one_lags(
    pair2: PgPair, backend_url: str, redis_server: RedisServer, agents: list[Agent]
) -> None:
    urls = ",".join(pair2.url(READER_ROLE, replica=i) for i in range(2))
    env = {"READ_DATABASE_URLS": urls, "CACHE_URL": redis_server.url, "CACHE_TTL": "60", **PATIENT}
    labels = [f"127.0.0.1:{port}" for port in pair2.replica_ports]
    with running_gateways(pair2, backend_url, env) as gateways:
        async with httpx.AsyncClient(timeout=10) as http:
            ready = (await http.get(f"{gateways[0]}/readyz")).json()
        assert ready["replicas"] == {label: "up" for label in labels}
        caught_up = await write_read_pairs(gateways, agents, PAIRS)
        spread = replica_reads(gateways)
        with replay_paused(pair2, replica=1):
            lagging = await write_read_pairs(gateways, agents, PAIRS)
        after = replica_reads(gateways)
    paused_reads = {label: after[label] - spread[label] for label in labels}
    log.warning(
        "two replicas: caught up %s in %.1fs (reads %s); one paused %s in %.1fs (reads %s)",
        caught_up,
        caught_up.seconds,
        dict(spread),
        lagging,
        lagging.seconds,
        paused_reads,
    )
    assert caught_up.pairs == PAIRS and caught_up.stale == 0 and not caught_up.errors
    assert all(share >= 0.3 for share in _shares({k: spread[k] for k in labels}).values()), spread
    assert lagging.pairs == PAIRS and lagging.stale == 0 and not lagging.errors
    assert paused_reads[labels[1]] == 0  # it never replayed any of these writes


async def test_behind_one_url_over_alternating_connections_no_read_misses_a_write(
    pair2: PgPair, backend_url: str, redis_server: RedisServer, agents: list[Agent]
) -> None:
    proxy = AlternatingProxy(pair2.replica_ports)
    proxy.start()
    try:
        url = pair2.url(READER_ROLE, replica=0).replace(
            f"127.0.0.1:{pair2.replica_ports[0]}", proxy.url_host_port
        )
        env = {"READ_DATABASE_URL": url, "CACHE_URL": redis_server.url, "CACHE_TTL": "60"}
        env |= PATIENT
        with running_gateways(pair2, backend_url, env) as gateways:
            caught_up = await write_read_pairs(gateways, agents, PAIRS)
            spread = dict(proxy.chunks)
            with replay_paused(pair2, replica=1):
                lagging = await write_read_pairs(gateways, agents, PAIRS)
    finally:
        proxy.stop()
    log.warning(
        "proxy: caught up %s in %.1fs (queries per upstream %s, connections %s); "
        "one paused %s in %.1fs",
        caught_up,
        caught_up.seconds,
        spread,
        dict(proxy.connections),
        lagging,
        lagging.seconds,
    )
    assert caught_up.pairs == PAIRS and caught_up.stale == 0 and not caught_up.errors
    assert all(share >= 0.3 for share in _shares(spread).values()), spread
    assert lagging.pairs == PAIRS and lagging.stale == 0
    # A connection to the paused replica is given up on, and the next reaches the other one.
    assert not lagging.errors, lagging.errors
