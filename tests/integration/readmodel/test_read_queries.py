"""The read tools' queries on the real replica: pages, cursors, counts, and the plans they use."""

from __future__ import annotations

from typing import Any

import pytest

from shared.cursor import encode_keyset
from shared.errors import ErrorCode, TaskgateError
from shared.schemas import TaskOut, TaskPage, UserStats
from taskgate.pgpair import PgPair
from tests.support.plans import crowd_tasks, indexes_used, plan_of, scans, starts_at_keyset
from tests.support.readmodel import (
    TASK_READS,
    MakeReader,
    TaskReader,
    insert_tasks,
    new_user,
    task_statement,
    user_with_tasks,
    wait_replayed,
)


async def _all_pages(
    reader: TaskReader, user_id: int, status: Any, limit: int
) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await reader.list_tasks(user_id, status, limit, cursor)
        TaskPage.model_validate(page)
        tasks.extend(page["tasks"])
        cursor = page["next_cursor"]
        if cursor is None:
            return tasks


@pytest.mark.parametrize("spacing", [1, 0], ids=["distinct-times", "same-time"])
async def test_cursor_pages_walk_every_task_once_newest_first(
    pg_pair: PgPair, make_reader: MakeReader, spacing: int
) -> None:
    user = new_user(pg_pair)
    wait_replayed(pg_pair, insert_tasks(pg_pair, user, 23, spacing=spacing))
    reader = await make_reader(cache_ttl=0)

    expected = pg_pair.psql(
        f"SELECT id FROM tasks WHERE user_id = {user} ORDER BY created_at DESC, id DESC"
    ).split()
    for status, where in (
        ("all", ""),
        ("completed", "AND completed"),
        ("pending", "AND NOT completed"),
    ):
        wanted = pg_pair.psql(
            f"SELECT id FROM tasks WHERE user_id = {user} {where} ORDER BY created_at DESC, id DESC"
        ).split()
        walked = await _all_pages(reader, user, status, 5)
        assert [str(t["id"]) for t in walked] == wanted
        assert all(t["user_id"] == user for t in walked)
    assert len(expected) == 23


async def test_last_full_page_has_no_cursor_to_an_empty_page(
    pg_pair: PgPair, make_reader: MakeReader
) -> None:
    user = user_with_tasks(pg_pair, 10)
    reader = await make_reader(cache_ttl=0)
    first = await reader.list_tasks(user, "all", 5, None)
    second = await reader.list_tasks(user, "all", 5, first["next_cursor"])
    assert first["next_cursor"] is not None
    assert len(second["tasks"]) == 5
    assert second["next_cursor"] is None


def _flip(cursor: str) -> str:
    middle = len(cursor) // 2
    return cursor[:middle] + ("A" if cursor[middle] != "A" else "B") + cursor[middle + 1 :]


async def test_forged_or_malformed_cursors_are_validation_errors(
    pg_pair: PgPair, make_reader: MakeReader
) -> None:
    user = user_with_tasks(pg_pair, 4)
    reader = await make_reader(cache_ttl=0)
    good = (await reader.list_tasks(user, "all", 2, None))["next_cursor"]
    assert good is not None
    scope = TASK_READS["list_tasks"].scope({"status": "all"})
    other_secret = encode_keyset(b"not-the-secret", scope, (_far_past(), 1))
    for bad in (
        "garbage",
        "",
        "!!!!",
        _flip(good),
        good + "AA",
        other_secret,
        "x" * 500,
    ):
        with pytest.raises(TaskgateError) as raised:
            await reader.list_tasks(user, "all", 2, bad)
        assert raised.value.code is ErrorCode.VALIDATION_ERROR, bad
        assert raised.value.details == {"field": "cursor"}
    # A cursor is bound to its status filter.
    with pytest.raises(TaskgateError) as raised:
        await reader.list_tasks(user, "completed", 2, good)
    assert raised.value.code is ErrorCode.VALIDATION_ERROR


def _far_past() -> Any:
    from datetime import UTC, datetime

    return datetime(2000, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("limit", "status"), [(0, "all"), (201, "all"), (5, "done")])
async def test_out_of_range_arguments_are_validation_errors(
    make_reader: MakeReader, limit: int, status: Any
) -> None:
    reader = await make_reader(cache_ttl=0)
    with pytest.raises(TaskgateError) as raised:
        await reader.list_tasks(1, status, limit, None)
    assert raised.value.code is ErrorCode.VALIDATION_ERROR


async def test_get_task_shows_own_tasks_only(pg_pair: PgPair, make_reader: MakeReader) -> None:
    owner, stranger = new_user(pg_pair), new_user(pg_pair)
    wait_replayed(pg_pair, insert_tasks(pg_pair, owner, 1))
    task_id = int(pg_pair.psql(f"SELECT id FROM tasks WHERE user_id = {owner}"))
    reader = await make_reader()

    task = await reader.get_task(owner, task_id)
    TaskOut.model_validate(task)
    assert (task["id"], task["user_id"]) == (task_id, owner)
    for user, wanted in ((stranger, task_id), (owner, task_id + 10_000_000)):
        with pytest.raises(TaskgateError) as raised:
            await reader.get_task(user, wanted)
        assert raised.value.code is ErrorCode.NOT_FOUND


async def test_user_stats_count_the_users_tasks_in_one_query(
    pg_pair: PgPair, make_reader: MakeReader
) -> None:
    user = new_user(pg_pair)
    wait_replayed(pg_pair, insert_tasks(pg_pair, user, 10, completed_every=4))
    reader = await make_reader(cache_ttl=0)
    from tests.support.readmodel import QueryCounter

    counter = QueryCounter(reader.replica)
    stats = await reader.get_user_stats(user)
    UserStats.model_validate(stats)
    completed = int(pg_pair.psql(f"SELECT count(*) FROM tasks WHERE user_id={user} AND completed"))
    assert stats == {"total": 10, "completed": completed, "pending": 10 - completed}
    assert counter.selects_from_tasks() == 1


# -- plans ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crowded_table(pg_pair: PgPair) -> int:
    """200 users with 250 tasks each, analysed and vacuumed: the planner has real statistics."""
    users = [new_user(pg_pair) for _ in range(3)]
    crowd_tasks(pg_pair)
    wait_replayed(pg_pair, pg_pair.psql("SELECT pg_current_wal_lsn()"))
    return users[0]


async def test_every_read_query_is_served_by_an_index_on_the_replica(
    crowded_table: int, make_reader: MakeReader, settings: Any
) -> None:
    user = crowded_table
    reader = await make_reader()
    after = (_far_past().replace(year=2100), 2**62)
    plans = {}
    async with reader.replica.connect() as conn:
        plans["list all"] = await plan_of(conn, task_statement("list_tasks", user, limit=50))
        plans["list page 2"] = await plan_of(
            conn, task_statement("list_tasks", user, after, limit=50)
        )
        plans["list pending"] = await plan_of(
            conn, task_statement("list_tasks", user, after, status="pending", limit=50)
        )
        plans["get"] = await plan_of(conn, task_statement("get_task", user, task_id=1))
        plans["stats"] = await plan_of(conn, task_statement("get_user_stats", user))
    for name, plan in plans.items():
        assert "Seq Scan" not in scans(plan), (name, plan)
    assert indexes_used(plans["list all"]) == {"ix_tasks_user_newest"}
    assert indexes_used(plans["list page 2"]) == {"ix_tasks_user_newest"}
    assert indexes_used(plans["list pending"]) == {"ix_tasks_user_status_newest"}
    assert indexes_used(plans["get"]) == {"tasks_pkey"}
    assert indexes_used(plans["stats"]) <= {"ix_tasks_user_status_newest", "ix_tasks_user_newest"}
    assert indexes_used(plans["stats"])
    # A later page starts at the cursor's place in the index, not by filtering earlier rows.
    for name in ("list page 2", "list pending"):
        assert starts_at_keyset(plans[name]), (name, plans[name])
