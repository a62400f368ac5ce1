"""How long a read right after a write waits for the replica, old way against new, side by side.

    uv run --group bench python -m tests.bench.replay_wait [--writes 400]

Run on purpose. It starts a PostgreSQL primary and streaming replica pinned to CPU 0 (this
process on CPU 1), then, write after write: commits one row on the primary, takes its commit
LSN as the backend does, and at once waits until the replica has replayed it, alternating:
- `poll`: the gateway's former wait (ask the position; if behind, sleep 5 ms, doubling to 50 ms,
  and ask again), each ask one round trip;
- `in replica`: readmodel.replicas.wait_replayed (one statement that sleeps a millisecond at a
  time in the replica until the position reaches the mark).
It prints each way's p50 / p99 wait, how many writes found the replica behind, and the round
trips spent. The read starts the moment the commit LSN is known, which is sooner than any agent
can ask (its write's answer still has to travel back through the gateway), so these are the
longest waits a read after a write can meet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from readmodel.lsn import parse_lsn
from readmodel.replicas import wait_replayed
from taskgate.pgpair import SUPERUSER, PgPair
from tests.bench.pinning import CLIENT_CPU, SERVER_CPU, pin
from tests.bench.run import HERE, load_average, percentile

POLL_FIRST_SECONDS = 0.005  # the former readmodel.replicas constants
POLL_MAX_SECONDS = 0.05
_POSITION = text("SELECT pg_last_wal_replay_lsn()::text")


async def poll_wait(conn: AsyncConnection, mark: int) -> int:
    """The former wait: returns the round trips it took."""
    interval, asks = POLL_FIRST_SECONDS, 0
    while True:
        asks += 1
        if parse_lsn(str(await conn.scalar(_POSITION))) >= mark:
            return asks
        await asyncio.sleep(interval)
        interval = min(interval * 2, POLL_MAX_SECONDS)


async def keep_replay_busy(pair: PgPair, stop: asyncio.Event) -> None:
    """Another client's bulk writes, so that replay has WAL to work through, as in a busy
    service: the replica is then often behind when a read right after a write asks."""
    engine = create_async_engine(pair.url(SUPERUSER), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            while not stop.is_set():
                await conn.execute(
                    text("INSERT INTO replay_probe SELECT g FROM generate_series(1, 2000) g")
                )
    finally:
        await engine.dispose()


async def measure(pair: PgPair, writes: int, busy: bool) -> dict[str, dict[str, float]]:
    primary = create_async_engine(pair.url(SUPERUSER), isolation_level="AUTOCOMMIT")
    replica = create_async_engine(pair.url(SUPERUSER, replica=True), isolation_level="AUTOCOMMIT")
    waits: dict[str, list[float]] = {"poll": [], "in replica": []}
    behind = {k: 0 for k in waits}
    trips = {k: 0 for k in waits}
    try:
        async with primary.connect() as p, replica.connect() as r:
            await p.execute(text("CREATE TABLE IF NOT EXISTS replay_probe (n int)"))
            stop = asyncio.Event()
            background = asyncio.create_task(keep_replay_busy(pair, stop)) if busy else None
            for i in range(writes):
                way = "poll" if i % 2 == 0 else "in replica"
                await p.execute(text("INSERT INTO replay_probe VALUES (:n)"), {"n": i})
                lsn = await p.scalar(text("SELECT pg_current_wal_insert_lsn()::text"))
                mark = parse_lsn(str(lsn))
                started = time.perf_counter()
                if way == "poll":
                    asks = await poll_wait(r, mark)
                    behind[way] += asks > 1
                    trips[way] += asks
                else:
                    seen, waited = await wait_replayed(r, mark, 1.0)
                    behind[way] += waited
                    trips[way] += 1 + waited  # the ask, then the waiting statement
                    while seen < mark:  # past one slice: wait again
                        seen, _ = await wait_replayed(r, mark, 1.0)
                        trips[way] += 2
                waits[way].append(time.perf_counter() - started)
            stop.set()
            if background is not None:
                await background
    finally:
        await primary.dispose()
        await replica.dispose()
    out = {}
    for way, values in waits.items():
        values.sort()
        out[way] = {
            "p50_ms": percentile(values, 0.5) * 1000,
            "p99_ms": percentile(values, 0.99) * 1000,
            "mean_ms": sum(values) / len(values) * 1000,
            "behind_share": behind[way] / len(values),
            "round_trips_per_read": trips[way] / len(values),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.bench.replay_wait", description=__doc__)
    p.add_argument("--writes", type=int, default=400)
    p.add_argument("--busy", action="store_true", help="another client's bulk writes meanwhile")
    p.add_argument("--out", type=Path, help="default: results/replay-wait[-busy].json")
    args = p.parse_args(argv)
    name = "replay-wait-busy.json" if args.busy else "replay-wait.json"
    args.out = args.out or HERE / "results" / name
    root = Path(tempfile.mkdtemp(prefix="taskgate-replay-"))
    try:
        with PgPair(root) as pair:
            for folder in (pair.primary_dir, pair.replica_dir):
                pin(int((folder / "postmaster.pid").read_text().split()[0]), SERVER_CPU)
            os.sched_setaffinity(0, {CLIENT_CPU})
            before = load_average()
            result = asyncio.run(measure(pair, args.writes, args.busy))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    data = {"writes": args.writes, "busy": args.busy, "load_before": before, **result}
    data["load_after"] = load_average()
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    for way, r in result.items():
        print(
            f"{way:>10}: wait p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, mean "
            f"{r['mean_ms']:.2f} ms; behind at first ask {r['behind_share']:.0%}; "
            f"{r['round_trips_per_read']:.2f} round trips",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
