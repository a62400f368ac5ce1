"""Uncached list_tasks latency as the tasks table grows from 10k to 1M rows.

Run on purpose: `uv run python -m tests.bench.list_tasks_scaling [--sizes 10000,100000,1000000]`.
It starts its own primary and replica in a temporary folder, seeds the primary with
INSERT ... SELECT generate_series, waits for the replica, and times TaskReader.list_tasks with
CACHE_TTL=0 (every call reaches the replica) for one user whose own task count stays fixed
while the rest of the table grows. The keyset queries walk an index, so the figures should not
grow with the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from readmodel.cache import ReadCache, TtlPolicy, build_cache
from readmodel.engine import create_read_engine
from shared.migrate import upgrade_to_head
from shared.settings import Settings
from taskgate.pgpair import PgPair
from tests.support.readmodel import TaskReader, one_replica, task_statement

PROBE_TASKS = 2_000  # the measured user's own tasks, the same at every table size
FILLER_USERS = 1_000


def _seed_to(pair: PgPair, total: int) -> None:
    """Grow the table to `total` tasks, spread over FILLER_USERS other users."""
    have = int(pair.psql("SELECT count(*) FROM tasks"))
    if total > have:
        pair.psql(
            "INSERT INTO tasks (user_id, title, description, completed, created_at, updated_at) "
            f"SELECT 2 + g % {FILLER_USERS}, 'filler ' || g, repeat('x', 60), g % 3 = 0, "
            "now() - make_interval(secs => g), now() "
            f"FROM generate_series({have + 1}, {total}) AS g"
        )
    pair.psql("VACUUM ANALYZE tasks")
    lsn = pair.psql("SELECT pg_current_wal_lsn()")
    while pair.psql(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'", replica=True) != "t":
        time.sleep(0.05)


def _seed_users(pair: PgPair) -> None:
    pair.psql(
        "INSERT INTO users (email, password_hash) "
        f"SELECT 'bench-' || g || '@example.com', 'x' FROM generate_series(1, {FILLER_USERS + 1}) g"
    )
    # User 1 is the probe: its tasks are interleaved in time with everyone else's.
    pair.psql(
        "INSERT INTO tasks (user_id, title, completed, created_at, updated_at) "
        "SELECT 1, 'probe ' || g, g % 3 = 0, now() - make_interval(secs => g * 7), now() "
        f"FROM generate_series(1, {PROBE_TASKS}) AS g"
    )


async def _time_calls(call: Any, runs: int) -> dict[str, float]:
    for _ in range(max(20, runs // 10)):  # warm the pool, the plan cache and shared buffers
        await call()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "p50_ms": statistics.median(samples),
        "p95_ms": samples[int(len(samples) * 0.95) - 1],
        "p99_ms": samples[int(len(samples) * 0.99) - 1],
        "mean_ms": statistics.fmean(samples),
    }


async def _server_side(engine: AsyncEngine, runs: int) -> dict[str, float]:
    """The first page's plan on the replica: buffers touched and execution time, no client."""
    dialect = postgresql.asyncpg.dialect()  # type: ignore[no-untyped-call]
    compiled = task_statement("list_tasks", 1, limit=50).compile(dialect=dialect)
    params = tuple(compiled.params[name] for name in compiled.positiontup)
    sql = f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {compiled.string}"
    times, buffers = [], 0.0
    async with engine.connect() as conn:
        for _ in range(runs):
            raw = (await conn.exec_driver_sql(sql, params)).scalar_one()
            report = (json.loads(raw) if isinstance(raw, str) else raw)[0]
            times.append(report["Execution Time"])
            plan = report["Plan"]
            buffers = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    return {"execution_ms_p50": statistics.median(times), "buffers": buffers}


async def _measure(settings: Settings, runs: int) -> dict[str, dict[str, float]]:
    engine = create_read_engine(settings, settings.read_database_url)
    reader = TaskReader(
        one_replica(engine),
        ReadCache(build_cache("memory://"), TtlPolicy(0)),  # CACHE_TTL=0: uncached
        cursor_secret=b"bench",
        ryw_wait_timeout=1.0,
        replica_timeout=5.0,
    )
    try:
        cursor = None
        for _ in range(10):  # the cursor of page 11
            cursor = (await reader.list_tasks(1, "all", 50, cursor))["next_cursor"]
        cases = {
            "first page (all, 50)": lambda: reader.list_tasks(1, "all", 50, None),
            "first page (pending, 50)": lambda: reader.list_tasks(1, "pending", 50, None),
            "page 11 (all, 50, cursor)": lambda: reader.list_tasks(1, "all", 50, cursor),
            "first page (all, 200)": lambda: reader.list_tasks(1, "all", 200, None),
        }
        figures = {name: await _time_calls(call, runs) for name, call in cases.items()}
        figures["server side, first page (all, 50)"] = await _server_side(engine, runs)
        return figures
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--out", type=Path, help="also write the figures here, as JSON")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    root = Path(tempfile.mkdtemp(prefix="taskgate-bench-scaling-"))
    results: dict[int, dict[str, dict[str, float]]] = {}
    try:
        with PgPair(root) as pair:
            upgrade_to_head(pair.database_url)
            settings = Settings(
                _env_file=None,
                database_url=pair.database_url,
                read_database_url=pair.read_database_url,
            )
            _seed_users(pair)
            for size in sizes:
                started = time.monotonic()
                _seed_to(pair, size)
                print(f"seeded {size} tasks in {time.monotonic() - started:.1f}s", flush=True)
                results[size] = asyncio.run(_measure(settings, args.runs))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    server = "server side, first page (all, 50)"
    cases = [case for case in next(iter(results.values())) if case != server]
    print(f"\nuncached list_tasks on the replica, {args.runs} calls each, milliseconds")
    print("| case | " + " | ".join(f"{s:,} tasks p50 / p95" for s in sizes) + " |")
    print("| --- |" + " --- |" * len(sizes))
    for case in cases:
        cells = [
            f"{results[s][case]['p50_ms']:.2f} / {results[s][case]['p95_ms']:.2f}" for s in sizes
        ]
        print(f"| {case} | " + " | ".join(cells) + " |")
    plans = [results[s][server] for s in sizes]
    cells = [f"{p['execution_ms_p50']:.3f} ms, {p['buffers']:.0f} buffers" for p in plans]
    print(f"| {server}: EXPLAIN ANALYZE | " + " | ".join(cells) + " |")
    if args.out:
        args.out.write_text(json.dumps({str(k): v for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
