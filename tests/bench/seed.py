"""Bulk seeding on the primary: users with one shared password hash, tasks by generate_series.

Signing up 1,000 users through the API would spend minutes in argon2; the benchmark needs rows
and tokens, not passwords, so every user gets the same precomputed hash and a token minted with
the stack's JWT_SECRET.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from backend.security import hash_password
from shared.settings import Settings
from shared.tokens import issue_gateway_token, issue_token
from taskgate.pgpair import SUPERUSER, PgPair


async def _connect(pair: PgPair, replica: bool = False) -> asyncpg.Connection:
    return await asyncpg.connect(pair.url(SUPERUSER, replica=replica, driver="postgresql"))


async def seed_users(pair: PgPair, count: int) -> list[int]:
    password_hash = hash_password("bench-password-not-used")
    conn = await _connect(pair)
    try:
        rows = await conn.fetch(
            "INSERT INTO users (email, password_hash) "
            "SELECT 'bench-' || g || '@example.com', $1 FROM generate_series(1, $2) g "
            "RETURNING id",
            password_hash,
            count,
        )
    finally:
        await conn.close()
    return sorted(int(r["id"]) for r in rows)


async def grow_tasks(pair: PgPair, user_ids: list[int], total: int) -> int:
    """Add tasks until the table holds `total` rows, spread evenly over the users.

    Task g belongs to user g mod N and is g seconds old, so every user's tasks interleave in
    time as real ones would. Returns the highest task id, the end of the seeded data.
    """
    conn = await _connect(pair)
    try:
        have = int(await conn.fetchval("SELECT count(*) FROM tasks"))
        if total > have:
            await conn.execute(
                "INSERT INTO tasks "
                "(user_id, title, description, completed, created_at, updated_at) "
                "SELECT ($1::bigint[])[1 + g % cardinality($1::bigint[])], "
                "'task ' || g, 'seeded by the benchmark: row ' || g || ' of the task table', "
                "g % 3 = 0, now() - make_interval(secs => g), now() - make_interval(secs => g) "
                "FROM generate_series($2::bigint + 1, $3::bigint) g",
                user_ids,
                have,
                total,
            )
            await conn.execute("VACUUM (ANALYZE) tasks")
        return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM tasks"))
    finally:
        await conn.close()


async def give_tasks(pair: PgPair, user_ids: list[int], per_user: int) -> None:
    """`per_user` tasks for each of these users, so that their first `list_tasks` page is full
    (50 tasks, as the issue measured) whatever the table's size."""
    conn = await _connect(pair)
    try:
        await conn.execute(
            "INSERT INTO tasks (user_id, title, description, completed, created_at, updated_at) "
            "SELECT u, 'reader task ' || g, 'seeded by the benchmark for a full page', "
            "g % 3 = 0, now() - make_interval(secs => g), now() - make_interval(secs => g) "
            "FROM unnest($1::bigint[]) u, generate_series(1, $2) g",
            user_ids,
            per_user,
        )
    finally:
        await conn.close()


async def delete_tasks_after(pair: PgPair, last_seeded_id: int) -> int:
    """Remove what write cells created, so every read cell sees the seeded table size."""
    conn = await _connect(pair)
    try:
        await conn.execute("DELETE FROM idempotency_keys WHERE task_id > $1", last_seeded_id)
        status = await conn.execute("DELETE FROM tasks WHERE id > $1", last_seeded_id)
        return int(status.split()[-1])
    finally:
        await conn.close()


async def wait_replayed(pair: PgPair, limit_s: float = 300.0) -> float:
    """Wait until the replica has replayed everything written so far; returns the seconds."""
    started = time.monotonic()
    primary = await _connect(pair)
    replica = await _connect(pair, replica=True)
    try:
        target = await primary.fetchval("SELECT pg_current_wal_lsn()")
        while True:
            done = await replica.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", target)
            if done:
                return time.monotonic() - started
            if time.monotonic() - started > limit_s:
                raise TimeoutError("the replica did not catch up with the seeded rows")
            await asyncio.sleep(0.1)
    finally:
        await primary.close()
        await replica.close()


def tokens_for(jwt_secret: str, user_ids: list[int], mcp_url: str) -> dict[int, str]:
    """Gateway tokens (aud = the stack's MCP_PUBLIC_URL)."""
    settings = Settings(_env_file=None, jwt_secret=jwt_secret, mcp_public_url=mcp_url)
    # Valid for the whole run: a long run must not see its tokens expire halfway.
    return {uid: issue_gateway_token(settings, uid, ttl_seconds=6 * 3600) for uid in user_ids}


def backend_tokens_for(jwt_secret: str, user_ids: list[int]) -> dict[int, str]:
    """Backend tokens (aud = JWT_AUDIENCE): what the pass-through peers forward, and what a
    direct `POST` carries. The backend refuses gateway tokens."""
    settings = Settings(_env_file=None, jwt_secret=jwt_secret)
    return {uid: issue_token(settings, uid, ttl_seconds=6 * 3600) for uid in user_ids}
