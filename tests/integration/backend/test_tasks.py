"""The task rules, through the REST API on the real primary."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.rules import DESCRIPTION_MAX, TITLE_MAX
from tests.support.backend_api import SignedUp

TASKS = "/api/v1/tasks"


async def _create(api: httpx.AsyncClient, user: SignedUp, **body: Any) -> dict[str, Any]:
    response = await api.post(TASKS, json=body, headers=user.auth)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def _error_fields(response: httpx.Response) -> list[str]:
    assert response.json()["status"] == "error"
    return [e["field"] for e in response.json()["details"]["errors"]]


async def test_created_task_belongs_to_the_caller_and_can_be_read_back(
    api: httpx.AsyncClient, user: SignedUp
) -> None:
    created = await _create(api, user, title="  Write the report  ", description="by Friday")
    assert created["title"] == "Write the report"
    assert created["user_id"] == user.id
    assert created["completed"] is False
    fetched = await api.get(f"{TASKS}/{created['id']}", headers=user.auth)
    assert fetched.status_code == 200
    assert fetched.json() == created


@pytest.mark.parametrize("length", [1, TITLE_MAX])
async def test_title_at_the_length_bounds_is_accepted(
    api: httpx.AsyncClient, user: SignedUp, length: int
) -> None:
    title = "t" * length
    assert (await _create(api, user, title=f"  {title}  "))["title"] == title


@pytest.mark.parametrize(
    "body",
    [
        {"title": ""},
        {"title": "   \t\n "},
        {"title": "t" * (TITLE_MAX + 1)},
        {"title": None},
        {"title": 42},
        {"title": "a\x00b"},
        {},
    ],
    ids=["empty", "blank", "too-long", "null", "number", "nul-char", "missing"],
)
async def test_bad_titles_are_refused(
    api: httpx.AsyncClient, user: SignedUp, body: dict[str, Any]
) -> None:
    response = await api.post(TASKS, json=body, headers=user.auth)
    assert response.status_code == 422
    assert response.json()["error_code"] == "validation_error"
    assert _error_fields(response) == ["title"]


async def test_description_length_is_bounded(api: httpx.AsyncClient, user: SignedUp) -> None:
    longest = "d" * DESCRIPTION_MAX
    assert (await _create(api, user, title="ok", description=longest))["description"] == longest
    too_long = await api.post(
        TASKS, json={"title": "x", "description": longest + "d"}, headers=user.auth
    )
    assert too_long.status_code == 422
    assert _error_fields(too_long) == ["description"]


async def test_unknown_fields_are_refused(api: httpx.AsyncClient, user: SignedUp) -> None:
    create = await api.post(TASKS, json={"title": "x", "priority": "high"}, headers=user.auth)
    assert create.status_code == 422
    assert _error_fields(create) == ["priority"]
    task = await _create(api, user, title="x")
    patch = await api.patch(
        f"{TASKS}/{task['id']}", json={"user_id": 1, "title": "y"}, headers=user.auth
    )
    assert patch.status_code == 422
    assert _error_fields(patch) == ["user_id"]


async def test_another_users_task_answers_not_found_for_every_operation(
    api: httpx.AsyncClient, user: SignedUp, other_user: SignedUp
) -> None:
    theirs = await _create(api, other_user, title="private")
    url = f"{TASKS}/{theirs['id']}"
    attempts = [
        await api.get(url, headers=user.auth),
        await api.patch(url, json={"title": "stolen"}, headers=user.auth),
        await api.post(f"{url}/complete", headers=user.auth),
        await api.delete(url, headers=user.auth),
    ]
    missing = await api.get(f"{TASKS}/{2**62}", headers=user.auth)
    for response in attempts:
        assert response.status_code == 404
        # Same shape as a task that does not exist: nothing says it belongs to someone else.
        assert response.json()["error_code"] == missing.json()["error_code"] == "not_found"
        assert set(response.json()["details"]) == set(missing.json()["details"])
    untouched = await api.get(url, headers=other_user.auth)
    assert untouched.json() == theirs


async def test_list_shows_only_the_callers_tasks_newest_first(
    api: httpx.AsyncClient, user: SignedUp, other_user: SignedUp
) -> None:
    mine = [(await _create(api, user, title=f"mine {i}"))["id"] for i in range(3)]
    await _create(api, other_user, title="theirs")
    listed = await api.get(TASKS, headers=user.auth)
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json()["tasks"]] == list(reversed(mine))
    assert listed.json()["next_cursor"] is None


async def test_list_filters_by_status(api: httpx.AsyncClient, user: SignedUp) -> None:
    ids = [(await _create(api, user, title=f"task {i}"))["id"] for i in range(4)]
    for task_id in ids[::2]:
        assert (await api.post(f"{TASKS}/{task_id}/complete", headers=user.auth)).is_success

    async def listed(status: str) -> list[int]:
        response = await api.get(TASKS, params={"status": status}, headers=user.auth)
        assert response.status_code == 200
        return [t["id"] for t in response.json()["tasks"]]

    assert sorted(await listed("completed")) == sorted(ids[::2])
    assert sorted(await listed("pending")) == sorted(ids[1::2])
    assert sorted(await listed("all")) == sorted(ids)
    bad = await api.get(TASKS, params={"status": "done"}, headers=user.auth)
    assert bad.status_code == 422
    assert _error_fields(bad) == ["status"]


async def test_keyset_pages_cover_every_task_once_in_order(
    api: httpx.AsyncClient, user: SignedUp
) -> None:
    created = [(await _create(api, user, title=f"task {i}"))["id"] for i in range(7)]
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await api.get(TASKS, params=params, headers=user.auth)).json()
        assert page["tasks"], "a next_cursor never leads to an empty page"
        seen += [t["id"] for t in page["tasks"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(created))
    assert pages == 3


async def test_cursors_cannot_be_forged_or_reused_across_filters(
    api: httpx.AsyncClient, user: SignedUp
) -> None:
    for i in range(3):
        await _create(api, user, title=f"task {i}")
    first = (await api.get(TASKS, params={"limit": 1}, headers=user.auth)).json()
    cursor = first["next_cursor"]
    assert cursor
    forged = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    for params in (
        {"cursor": forged},
        {"cursor": cursor, "status": "pending"},
        {"cursor": "not a cursor"},
    ):
        response = await api.get(TASKS, params=params, headers=user.auth)
        assert response.status_code == 422
        assert response.json()["details"] == {"field": "cursor"}


async def test_limit_is_bounded(api: httpx.AsyncClient, user: SignedUp) -> None:
    for limit in (0, 201):
        response = await api.get(TASKS, params={"limit": limit}, headers=user.auth)
        assert response.status_code == 422
        assert _error_fields(response) == ["limit"]


async def test_partial_update_changes_only_the_fields_sent(
    api: httpx.AsyncClient, user: SignedUp
) -> None:
    task = await _create(api, user, title="draft", description="keep me")
    response = await api.patch(
        f"{TASKS}/{task['id']}", json={"title": "  final "}, headers=user.auth
    )
    assert response.status_code == 200
    updated = response.json()
    assert updated["title"] == "final"
    assert updated["description"] == "keep me"
    assert updated["completed"] is False
    assert updated["updated_at"] > task["updated_at"]
    reopened = await api.patch(f"{TASKS}/{task['id']}", json={"completed": True}, headers=user.auth)
    assert reopened.json()["completed"] is True


@pytest.mark.parametrize("clearing", [None, "", "   "], ids=["null", "empty", "blank"])
async def test_description_can_be_cleared(
    api: httpx.AsyncClient, user: SignedUp, clearing: str | None
) -> None:
    task = await _create(api, user, title="t", description="details")
    response = await api.patch(
        f"{TASKS}/{task['id']}", json={"description": clearing}, headers=user.auth
    )
    assert response.status_code == 200
    assert response.json()["description"] is None
    assert response.json()["title"] == "t"


@pytest.mark.parametrize(
    "body",
    [{"title": None}, {"completed": None}, {"title": ""}, {"completed": "maybe"}],
    ids=["null-title", "null-completed", "empty-title", "not-a-bool"],
)
async def test_update_refuses_values_a_task_cannot_hold(
    api: httpx.AsyncClient, user: SignedUp, body: dict[str, Any]
) -> None:
    task = await _create(api, user, title="unchanged")
    response = await api.patch(f"{TASKS}/{task['id']}", json=body, headers=user.auth)
    assert response.status_code == 422
    assert _error_fields(response) == list(body)
    after = await api.get(f"{TASKS}/{task['id']}", headers=user.auth)
    assert after.json() == task


async def test_an_empty_update_is_refused(api: httpx.AsyncClient, user: SignedUp) -> None:
    task = await _create(api, user, title="t")
    response = await api.patch(f"{TASKS}/{task['id']}", json={}, headers=user.auth)
    assert response.status_code == 422
    assert response.json()["error_code"] == "validation_error"


async def test_completing_twice_changes_nothing_the_second_time(
    api: httpx.AsyncClient, user: SignedUp
) -> None:
    task = await _create(api, user, title="t")
    first = await api.post(f"{TASKS}/{task['id']}/complete", headers=user.auth)
    second = await api.post(f"{TASKS}/{task['id']}/complete", headers=user.auth)
    assert first.status_code == second.status_code == 200
    assert first.json()["completed"] is True
    assert second.json() == first.json()


async def test_deleted_task_is_gone(api: httpx.AsyncClient, user: SignedUp) -> None:
    task = await _create(api, user, title="t")
    deleted = await api.delete(f"{TASKS}/{task['id']}", headers=user.auth)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await api.get(f"{TASKS}/{task['id']}", headers=user.auth)).status_code == 404
    again = await api.delete(f"{TASKS}/{task['id']}", headers=user.auth)
    assert again.status_code == 404


@pytest.mark.parametrize("task_id", ["0", "-1", str(2**63), "abc"])
async def test_task_ids_outside_bigint_are_refused(
    api: httpx.AsyncClient, user: SignedUp, task_id: str
) -> None:
    response = await api.get(f"{TASKS}/{task_id}", headers=user.auth)
    assert response.status_code == 422
    assert _error_fields(response) == ["task_id"]
