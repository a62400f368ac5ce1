"""A replica that goes down is left out while the other serves, and comes back after backoff."""

from __future__ import annotations

import asyncio
import time

from taskgate.pgpair import PgPair
from tests.support.faults import start_replica, stop_replica
from tests.support.scale import MakeReader


async def test_reads_go_on_from_the_other_replica_and_return_once_it_is_back(
    pair2: PgPair, make_reader: MakeReader
) -> None:
    reader = await make_reader(True)
    first, second = reader.replicas.replicas
    await asyncio.gather(*(reader.get_user_stats(10**9) for _ in range(4)))  # both pooled
    stop_replica(pair2, 1)
    try:
        for _ in range(20):  # the first read to pick it fails over within the same call
            assert await reader.get_user_stats(10**9) == {"total": 0, "completed": 0, "pending": 0}
        assert second.errors >= 1 and not second.usable(time.monotonic())
        served = first.reads
    finally:
        start_replica(pair2, 1)
        pair2.wait_streaming()
    await asyncio.sleep(second.retry_at - time.monotonic() + 0.1)  # its backoff ends
    for _ in range(20):
        await reader.get_user_stats(10**9)
    assert second.reads > 0 and first.reads - served < 20  # back in turn
    assert reader.stats.replica_errors == second.errors
