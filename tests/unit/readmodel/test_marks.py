"""Write marks in one process: never lowered, bounded by users, and never silently lost."""

from __future__ import annotations

import asyncio

from readmodel.marks import LocalMarks, Marks, PositionRounds, ReadMark


async def test_a_mark_is_never_lowered() -> None:
    marks = Marks()
    assert await marks.mark_for(7) == ReadMark(0, own=False)
    await marks.raise_mark(7, 500)
    await marks.raise_mark(7, 400)
    assert await marks.mark_for(7) == ReadMark(500, own=True)


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
    assert await marks.mark_for(99) == ReadMark(12_345, own=False)


async def test_a_floor_not_yet_known_is_taken_once_the_backend_answers() -> None:
    answers: list[int | Exception] = [ConnectionError("backend down"), 777]

    async def primary_position() -> int:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    marks = Marks(primary_position=primary_position)
    await marks.prepare()  # start-up goes on; no write can pass this gateway meanwhile
    assert (await marks.mark_for(1)).position == 0
    marks._next_floor_try = 0  # a second later
    assert (await marks.mark_for(1)).position == 777


async def test_concurrent_reads_share_position_requests_that_began_after_them() -> None:
    asked: list[int] = []

    async def primary_position() -> int:
        asked.append(len(asked))
        await asyncio.sleep(0.01)
        return len(asked)

    rounds = PositionRounds(primary_position)
    first = asyncio.ensure_future(rounds.position())
    await asyncio.sleep(0)
    later = await asyncio.gather(*(rounds.position() for _ in range(50)))
    assert await first == 1
    assert set(later) == {2}  # one more request, begun after all fifty arrived
    assert len(asked) == 2
