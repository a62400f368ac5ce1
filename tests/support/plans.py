"""Query plans: EXPLAIN a SQLAlchemy query on a real server and read which indexes it uses."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from taskgate.pgpair import PgPair


def crowd_tasks(pair: PgPair) -> None:
    """197 more users with 250 tasks each on the primary, analysed: the planner has statistics."""
    pair.psql(
        "INSERT INTO users (email, password_hash) "
        "SELECT 'crowd-' || g || '-' || md5(random()::text) || '@example.com', 'x' "
        "FROM generate_series(1, 197) AS g"
    )
    pair.psql(
        "INSERT INTO tasks (user_id, title, completed, created_at) "
        "SELECT u.id, 'task ' || g, g % 3 = 0, now() - make_interval(secs => g) "
        "FROM (SELECT id FROM users ORDER BY id DESC LIMIT 200) AS u, generate_series(1, 250) AS g"
    )
    pair.psql("VACUUM ANALYZE tasks")


async def plan_of(conn: AsyncConnection, query: Any) -> dict[str, Any]:
    compiled = query.compile(dialect=postgresql.asyncpg.dialect())  # type: ignore[no-untyped-call]
    params = tuple(compiled.params[name] for name in compiled.positiontup)
    result = await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled.string}", params)
    raw = result.scalar_one()
    plan: dict[str, Any] = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return plan


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(nodes(child))
    return found


def indexes_used(plan: dict[str, Any]) -> set[str]:
    return {n["Index Name"] for n in nodes(plan) if "Index Name" in n}


def scans(plan: dict[str, Any]) -> set[str]:
    return {n["Node Type"] for n in nodes(plan) if "Scan" in n["Node Type"]}


def starts_at_keyset(plan: dict[str, Any]) -> bool:
    """True when the page starts at the cursor's place in the index (an index condition)."""
    conditions = [n.get("Index Cond", "") for n in nodes(plan)]
    return any("created_at" in c and "id" in c for c in conditions)
