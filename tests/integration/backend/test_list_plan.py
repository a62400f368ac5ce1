"""The backend's task list pages on the same row-comparison keyset as the read model."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.services.tasks import list_tasks_query
from taskgate.pgpair import PgPair
from tests.support.plans import crowd_tasks, indexes_used, plan_of, scans, starts_at_keyset


@pytest.fixture(scope="module")
def crowded_user(pg_pair: PgPair) -> int:
    email = f"planner-{uuid.uuid4().hex[:12]}@example.com"
    user = int(
        pg_pair.psql(
            f"INSERT INTO users (email, password_hash) VALUES ('{email}', 'x') RETURNING id"
        ).splitlines()[0]
    )
    crowd_tasks(pg_pair)  # the user is among the 200 newest, so it gets 250 tasks too
    return user


async def test_every_backend_page_starts_at_its_place_in_the_index(
    crowded_user: int, primary: AsyncEngine
) -> None:
    after = (datetime(2100, 1, 1, tzinfo=UTC), 2**62)
    async with primary.connect() as conn:
        plans = {
            "list all": await plan_of(conn, list_tasks_query(crowded_user, "all", 50, None)),
            "list page 2": await plan_of(conn, list_tasks_query(crowded_user, "all", 50, after)),
            "list pending": await plan_of(
                conn, list_tasks_query(crowded_user, "pending", 50, after)
            ),
        }
    for name, plan in plans.items():
        assert "Seq Scan" not in scans(plan), (name, plan)
    assert indexes_used(plans["list all"]) == {"ix_tasks_user_newest"}
    assert indexes_used(plans["list page 2"]) == {"ix_tasks_user_newest"}
    assert indexes_used(plans["list pending"]) == {"ix_tasks_user_status_newest"}
    for name in ("list page 2", "list pending"):
        assert starts_at_keyset(plans[name]), (name, plans[name])
