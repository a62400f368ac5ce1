"""Write marks in one process: never lowered, bounded by users, and never silently lost."""

from __future__ import annotations

import pytest

from readmodel.marks import LocalMarks, Marks, MarksUnknown


async def test_a_mark_is_never_lowered() -> None:
    marks = Marks()
    assert await marks.mark_for(7) == 0
    await marks.raise_mark(7, 500)
    await marks.raise_mark(7, 400)
    assert await marks.mark_for(7) == 500


def test_a_mark_dropped_to_stay_bounded_raises_the_floor_instead_of_vanishing() -> None:
    local = LocalMarks(max_users=2)
    local.raise_mark(1, 100)
    local.raise_mark(2, 50)
    local.raise_mark(3, 10)  # user 1's mark is dropped: it becomes the floor
    assert local.floor == 100
    assert local.mark_for(1) == 100
    assert local.mark_for(3) == 100  # conservative for everyone, never "no write"
    assert len(local._marks) == 2


async def test_a_new_process_reads_no_older_than_the_primary_was_at_start() -> None:
    async def primary_position() -> int:
        return 12_345

    marks = Marks(primary_position=primary_position)
    await marks.prepare()
    assert await marks.mark_for(99) == 12_345


async def test_without_the_primary_position_a_read_is_refused_not_treated_as_no_write() -> None:
    async def unreachable() -> int:
        raise ConnectionError("backend down")

    marks = Marks(primary_position=unreachable)
    await marks.prepare()  # start-up goes on
    with pytest.raises(MarksUnknown):
        await marks.mark_for(1)
