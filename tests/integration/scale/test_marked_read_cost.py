"""What a read that carries a mark costs over one that does not, on the real replicas."""

from __future__ import annotations

import logging
import statistics
import time

import pytest

from taskgate.pgpair import PgPair
from tests.support.readmodel import TaskReader
from tests.support.scale import MakeReader

log = logging.getLogger(__name__)
READS = 300


async def _p50_ms(reader: TaskReader, user_id: int) -> float:
    times = []
    for _ in range(READS):
        started = time.perf_counter()
        await reader.get_user_stats(user_id)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


@pytest.mark.parametrize("servers", [False, True], ids=["one-url", "urls"])
async def test_a_marked_read_costs_at_most_one_more_round_trip(
    pair2: PgPair, make_reader: MakeReader, servers: bool
) -> None:
    reader = await make_reader(servers)
    unmarked_user, marked_user = 10**9, 10**9 + 1  # no tasks: the cheapest query
    # A mark the replicas have already replayed: what costs is the check, not a wait.
    await reader.note_write(marked_user, pair2.psql("SELECT pg_current_wal_lsn()"))
    for replica in range(2):
        pair2.psql("SELECT pg_last_wal_replay_lsn()", replica=replica)
    await reader.get_user_stats(marked_user)  # warm: connections open, positions known
    await reader.get_user_stats(unmarked_user)
    unmarked = await _p50_ms(reader, unmarked_user)
    marked = await _p50_ms(reader, marked_user)
    log.warning(
        "%s: p50 unmarked %.2f ms, marked %.2f ms (+%.2f ms)",
        "READ_DATABASE_URLS" if servers else "READ_DATABASE_URL",
        unmarked,
        marked,
        marked - unmarked,
    )
    assert marked < unmarked * 3 + 5  # a check, never a wait: the mark is long replayed
