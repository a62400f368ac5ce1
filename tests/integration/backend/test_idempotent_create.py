"""POST /tasks with an Idempotency-Key: retries return the first task and never duplicate it."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.backend_api import SignedUp

TASKS = "/api/v1/tasks"


def _keyed(user: SignedUp, key: str) -> dict[str, str]:
    return {**user.auth, "Idempotency-Key": key}


async def _rows_titled(primary: AsyncEngine, user_id: int, title: str) -> int:
    async with primary.connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM tasks WHERE user_id = :u AND title = :t"),
            {"u": user_id, "t": title},
        )
    return int(count or 0)


async def test_retry_with_same_key_and_body_returns_the_same_task(
    api: httpx.AsyncClient, user: SignedUp, primary: AsyncEngine
) -> None:
    key = uuid.uuid4().hex
    body = {"title": "pay rent", "description": "before the 1st"}
    first = await api.post(TASKS, json=body, headers=_keyed(user, key))
    retry = await api.post(TASKS, json=body, headers=_keyed(user, key))
    assert first.status_code == 201
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert retry.json() == first.json()
    assert await _rows_titled(primary, user.id, "pay rent") == 1


async def test_twenty_concurrent_retries_create_exactly_one_task(
    api: httpx.AsyncClient, user: SignedUp, primary: AsyncEngine
) -> None:
    key = uuid.uuid4().hex
    title = f"concurrent {key}"
    responses = await asyncio.gather(
        *(api.post(TASKS, json={"title": title}, headers=_keyed(user, key)) for _ in range(20))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await _rows_titled(primary, user.id, title) == 1


async def test_same_key_with_a_different_body_is_a_conflict(
    api: httpx.AsyncClient, user: SignedUp, primary: AsyncEngine
) -> None:
    key = uuid.uuid4().hex
    first = await api.post(TASKS, json={"title": "original"}, headers=_keyed(user, key))
    other = await api.post(TASKS, json={"title": "something else"}, headers=_keyed(user, key))
    assert first.status_code == 201
    assert other.status_code == 409
    assert other.json()["error_code"] == "conflict"
    assert other.json()["details"]["reason"] == "other_body"
    assert await _rows_titled(primary, user.id, "something else") == 0


async def test_bodies_that_mean_the_same_task_count_as_the_same_body(
    api: httpx.AsyncClient, user: SignedUp
) -> None:
    key = uuid.uuid4().hex
    first = await api.post(TASKS, json={"title": "trim me"}, headers=_keyed(user, key))
    retry = await api.post(
        TASKS, json={"title": "  trim me ", "description": None}, headers=_keyed(user, key)
    )
    assert retry.status_code == 200
    assert retry.json()["id"] == first.json()["id"]


async def test_keys_belong_to_one_user(
    api: httpx.AsyncClient, user: SignedUp, other_user: SignedUp
) -> None:
    key = uuid.uuid4().hex
    mine = await api.post(TASKS, json={"title": "same"}, headers=_keyed(user, key))
    theirs = await api.post(TASKS, json={"title": "same"}, headers=_keyed(other_user, key))
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert theirs.json()["user_id"] == other_user.id


async def test_retry_after_the_task_was_deleted_is_a_conflict_not_a_new_task(
    api: httpx.AsyncClient, user: SignedUp, primary: AsyncEngine
) -> None:
    key = uuid.uuid4().hex
    title = f"short-lived {key}"
    first = await api.post(TASKS, json={"title": title}, headers=_keyed(user, key))
    await api.delete(f"{TASKS}/{first.json()['id']}", headers=user.auth)
    retry = await api.post(TASKS, json={"title": title}, headers=_keyed(user, key))
    assert retry.status_code == 409
    assert retry.json()["details"]["reason"] == "task_deleted"
    assert await _rows_titled(primary, user.id, title) == 0


async def test_retry_returns_the_task_as_it_is_now(api: httpx.AsyncClient, user: SignedUp) -> None:
    key = uuid.uuid4().hex
    first = await api.post(TASKS, json={"title": "t"}, headers=_keyed(user, key))
    await api.post(f"{TASKS}/{first.json()['id']}/complete", headers=user.auth)
    retry = await api.post(TASKS, json={"title": "t"}, headers=_keyed(user, key))
    assert retry.status_code == 200
    assert retry.json()["completed"] is True


async def test_creates_without_a_key_are_not_deduplicated(
    api: httpx.AsyncClient, user: SignedUp, primary: AsyncEngine
) -> None:
    title = f"twice {uuid.uuid4().hex}"
    for _ in range(2):
        assert (await api.post(TASKS, json={"title": title}, headers=user.auth)).status_code == 201
    assert await _rows_titled(primary, user.id, title) == 2


async def test_malformed_keys_are_refused(api: httpx.AsyncClient, user: SignedUp) -> None:
    for key in ("", "has space", "k" * 201):
        response = await api.post(TASKS, json={"title": "t"}, headers=_keyed(user, key))
        assert response.status_code == 422, key
        assert response.json()["details"]["errors"][0]["field"] == "Idempotency-Key"
