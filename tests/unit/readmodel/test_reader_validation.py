"""Bad read arguments are validation errors before any database is touched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from readmodel.cache import ReadCache, TtlPolicy, build_cache
from readmodel.reader import _within
from shared.cursor import encode_keyset
from shared.errors import ErrorCode, TaskgateError
from tests.support.readmodel import TASK_READS, TaskReader, one_replica

SECRET = b"unit-secret"


@pytest.fixture
async def reader() -> AsyncIterator[TaskReader]:
    # Nothing listens on port 1: a query would fail, so a validation error proves none was sent.
    engine = create_async_engine("postgresql+asyncpg://nobody:x@127.0.0.1:1/none")
    yield TaskReader(
        one_replica(engine),
        ReadCache(build_cache("memory://"), TtlPolicy(60)),
        cursor_secret=SECRET,
        ryw_wait_timeout=0.1,
        replica_timeout=0.5,
    )
    await engine.dispose()


def _cursor(secret: bytes, status: str) -> str:
    scope = TASK_READS["list_tasks"].scope({"status": status})
    return encode_keyset(secret, scope, (datetime(2026, 1, 1, tzinfo=UTC), 5))


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "////",
        "",
        "é",
        "A" * 300,
        _cursor(b"another-secret", "all"),
        _cursor(SECRET, "pending"),  # made for another status
    ],
)
async def test_a_forged_or_malformed_cursor_is_a_validation_error(
    reader: TaskReader, cursor: str
) -> None:
    with pytest.raises(TaskgateError) as raised:
        await reader.list_tasks(1, "all", 10, cursor)
    assert raised.value.code is ErrorCode.VALIDATION_ERROR
    assert raised.value.details == {"field": "cursor"}


@pytest.mark.parametrize("limit", [0, -1, 201, 10**9])
async def test_a_limit_outside_1_to_200_is_a_validation_error(
    reader: TaskReader, limit: int
) -> None:
    with pytest.raises(TaskgateError) as raised:
        await reader.list_tasks(1, "all", limit, None)
    assert raised.value.code is ErrorCode.VALIDATION_ERROR


@pytest.mark.parametrize("task_id", [0, -5, 2**63])
async def test_an_impossible_task_id_is_a_validation_error(
    reader: TaskReader, task_id: int
) -> None:
    with pytest.raises(TaskgateError) as raised:
        await reader.get_task(1, task_id)
    assert raised.value.code is ErrorCode.VALIDATION_ERROR


async def test_an_unreachable_replica_is_replica_unavailable(reader: TaskReader) -> None:
    with pytest.raises(TaskgateError) as raised:
        await reader.get_user_stats(1)
    assert raised.value.code is ErrorCode.REPLICA_UNAVAILABLE
    assert "nobody" not in str(raised.value.details)  # no URL, no credentials


async def test_within_answers_at_the_bound_without_waiting_for_cleanup() -> None:
    cleaned = asyncio.Event()

    async def hangs_and_cleans_up_slowly() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.2)  # a rollback on a server that answers late
            cleaned.set()

    with pytest.raises(TimeoutError):
        await _within(0.05, hangs_and_cleans_up_slowly())
    assert not cleaned.is_set()
    await asyncio.wait_for(cleaned.wait(), 5)


async def test_a_malformed_commit_lsn_leaves_no_mark_and_does_not_fail_the_write(
    reader: TaskReader,
) -> None:
    await reader.note_write(1, "not-an-lsn")
    await reader.note_write(1, "1/10")
    await reader.note_write(1, "0/5")  # older: the mark stays
    assert (await reader.marks.mark_for(1)).position == (1 << 32) + 0x10
