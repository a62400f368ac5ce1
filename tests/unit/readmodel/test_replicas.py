"""Choosing a replica: in turn among usable ones, a caught-up one for a mark, backoff on failure."""

from __future__ import annotations

import time
from collections import Counter

from sqlalchemy.ext.asyncio import create_async_engine

from readmodel.lag import ReplicaLag
from readmodel.replicas import Replica, ReplicaSet, replica_labels


def _set(*replayed: int, servers: bool = True) -> ReplicaSet:
    replicas = [
        Replica(str(i), create_async_engine("postgresql+asyncpg://u:p@127.0.0.1:1/db"), replayed=r)
        for i, r in enumerate(replayed)
    ]
    return ReplicaSet(replicas, servers=servers, max_lag_seconds=30, retry_max_seconds=8)


def test_labels_are_host_and_port_never_the_password() -> None:
    urls = ["postgresql+asyncpg://r:secret@db1:5433/t", "postgresql+asyncpg://r:secret@db2/t"]
    assert replica_labels(urls) == ["db1:5433", "db2:5432"]
    assert replica_labels([urls[0], urls[0]]) == ["0", "1"]


async def test_unmarked_reads_take_usable_replicas_in_turn() -> None:
    replicas = _set(0, 0)
    chosen = Counter([(await replicas.choose(0, 1, 1))[0].label for _ in range(10)])  # type: ignore[union-attr]
    assert chosen == {"0": 5, "1": 5}


async def test_a_marked_read_goes_only_to_a_replica_known_to_have_replayed_it() -> None:
    replicas = _set(100, 500)
    for _ in range(5):
        replica, waited = await replicas.choose(400, 1, 1)
        assert replica is not None and replica.label == "1" and not waited


async def test_a_failed_replica_is_left_out_with_a_doubling_backoff() -> None:
    replicas = _set(0, 0)
    broken = replicas.replicas[0]
    broken.failed(retry_max=8)
    assert 0.9 < broken.retry_at - time.monotonic() <= 1.0
    assert broken.replayed == 0
    for expected in (2, 4, 8, 8):
        broken.failed(retry_max=8)
        assert broken.backoff == expected
    assert [r.label for r in replicas.usable()] == ["1"]
    broken.answered()
    assert len(replicas.usable()) == 2


async def test_none_usable_gives_none_and_the_soonest_retry_is_the_least_bad() -> None:
    replicas = _set(0, 0)
    replicas.replicas[0].failed(retry_max=8)
    replicas.replicas[0].failed(retry_max=8)
    replicas.replicas[1].failed(retry_max=8)
    assert await replicas.choose(0, 1, 1) == (None, False)
    assert replicas.least_bad().label == "1"


def test_a_replica_is_out_after_two_samples_over_the_lag_bound_and_back_after_one_within() -> None:
    replicas = _set(0)
    replica = replicas.replicas[0]
    replicas.sampled(replica, ReplicaLag(bytes=10, seconds=99, replayed=7))
    assert not replica.lagging  # one sample: an idle spell ending, maybe
    replicas.sampled(replica, ReplicaLag(bytes=10, seconds=99, replayed=8))
    assert replica.lagging and replica.replayed == 8
    replicas.sampled(replica, ReplicaLag(bytes=0, seconds=0, replayed=9))
    assert not replica.lagging


def test_behind_a_pooler_a_sampled_position_is_never_trusted() -> None:
    replicas = _set(0, servers=False)
    replicas.sampled(replicas.replicas[0], ReplicaLag(bytes=0, seconds=0, replayed=9))
    assert replicas.replicas[0].replayed == 0
