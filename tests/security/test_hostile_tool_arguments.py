"""Property tests: whatever arguments an agent sends to any tool, the answer is a valid result or
the shared error envelope, never server_error, never a traceback, never another user's task.

The gateway runs in-process on the real backend process and the real primary and replica.
"""

from __future__ import annotations

import base64
import json
import operator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from mcp.types import CallToolResult

from shared.cursor import encode_keyset
from shared.rules import LIMIT_MAX
from tests.support.agents import Agent, sign_up
from tests.support.config import TEST_JWT_SECRET
from tests.support.mcp_results import envelope_of, ok
from tests.support.readmodel import TASK_READS
from tests.support.threaded_client import ThreadedClient

ANY_CHAR = st.characters(exclude_categories=())  # lone surrogates, NUL, controls, everything
# What JSON can carry as UTF-8: everything but lone surrogates (NUL, controls, RTL marks, emoji).
UTF8_CHAR = st.characters(codec="utf-8")
SQLISH = st.sampled_from(
    [
        "' OR '1'='1",
        "1; DROP TABLE tasks; --",
        "1 OR 1=1",
        "'); DELETE FROM tasks WHERE ('1'='1",
        "\\x00' UNION SELECT password_hash FROM users --",
        "%' AND pg_sleep(5) IS NULL --",
        "$$; COPY tasks TO PROGRAM 'id'; $$",
        "*/ SELECT 1 /*",
    ]
)
ODD_TEXT = st.text(ANY_CHAR, max_size=300)
HUGE_TEXT = st.builds(operator.mul, ANY_CHAR, st.integers(1_000, 300_000))
ODD_INTS = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, -(2**63), 2**31, 2**63 - 1, 2**63, 2**64, 10**40, -(10**40)]),
)
SCALARS = st.one_of(st.none(), st.booleans(), ODD_INTS, st.floats(), ODD_TEXT, SQLISH)
HOSTILE = st.one_of(
    SCALARS,
    HUGE_TEXT,
    st.recursive(
        SCALARS,
        # Keys stay encodable: the SDK client itself cannot serialise a lone surrogate in a key.
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text(UTF8_CHAR, max_size=30), inner, max_size=3)
        ),
        max_leaves=6,
    ),
)
STATUSES = ("all", "pending", "completed")


@dataclass(frozen=True)
class Seeds:
    """Real values to mix with hostile ones, so calls also get past validation."""

    own_ids: list[int]
    foreign_id: int
    cursors: list[str]  # real next_cursor values, one per status


def forged_cursors(seeds: Seeds) -> st.SearchStrategy[str]:
    """What an agent can make without the secret: noise, tampering, another key, other filters."""
    keyset = st.tuples(st.datetimes(timezones=st.just(UTC)), st.integers(-(2**70), 2**70))
    return st.one_of(
        ODD_TEXT,
        st.binary(max_size=150).map(lambda b: base64.urlsafe_b64encode(b).decode()),
        st.builds(_signed, st.binary(min_size=1, max_size=32), st.sampled_from(STATUSES), keyset),
        st.builds(_tamper, st.sampled_from(seeds.cursors), st.integers(0, 200), ANY_CHAR),
        st.sampled_from(seeds.cursors).map(lambda c: c[: len(c) // 2]),
        st.sampled_from(seeds.cursors).map(lambda c: c + "AA"),
        st.sampled_from(seeds.cursors),  # a real one, possibly with another status
    )


def _signed(secret: bytes, status: str, keyset: tuple[object, ...]) -> str:
    return encode_keyset(secret, TASK_READS["list_tasks"].scope({"status": status}), keyset)


def _tamper(cursor: str, at: int, char: str) -> str:
    at %= len(cursor)
    return cursor[:at] + char + cursor[at + 1 :]


def valid_fields(tool: str, seeds: Seeds) -> dict[str, st.SearchStrategy[Any]]:
    task_id = st.one_of(
        st.sampled_from([*seeds.own_ids, seeds.foreign_id]), st.integers(1, 2**63 - 1)
    )
    title = st.one_of(
        st.text(UTF8_CHAR, min_size=1, max_size=200),
        st.text(ANY_CHAR, min_size=1, max_size=200),
        SQLISH,
    )
    description = st.one_of(st.none(), st.text(UTF8_CHAR, max_size=1000), SQLISH)
    fields: dict[str, dict[str, st.SearchStrategy[Any]]] = {
        "create_task": {"title": title, "description": description},
        "update_task": {
            "task_id": task_id,
            "title": title,
            "description": description,
            "completed": st.booleans(),
        },
        "complete_task": {"task_id": task_id},
        "delete_task": {"task_id": task_id},
        "list_tasks": {
            "status": st.sampled_from(STATUSES),
            "limit": st.integers(1, 200),
            "cursor": forged_cursors(seeds),
        },
        "get_task": {"task_id": task_id},
        "get_user_stats": {},
    }
    return fields[tool]


def tool_arguments(tool: str, seeds: Seeds) -> st.SearchStrategy[dict[str, Any]]:
    """Valid arguments, valid ones with one field made hostile, or anything at all."""
    valid = valid_fields(tool, seeds)
    all_valid = st.fixed_dictionaries({}, optional=valid)
    one_hostile = st.builds(
        lambda args, name, value: {**args, name: value},
        all_valid,
        st.sampled_from(sorted(valid) or ["user_id"]) | ODD_TEXT,
        HOSTILE,
    )
    fields = {name: st.one_of(strategy, HOSTILE) for name, strategy in valid.items()}
    unknown = st.dictionaries(st.one_of(ODD_TEXT, SQLISH), HOSTILE, max_size=2)
    anything = st.builds(
        lambda known, extra: {**extra, **known}, st.fixed_dictionaries({}, optional=fields), unknown
    )
    return st.one_of(all_valid, one_hostile, anything)


def tasks_in(result: CallToolResult) -> list[dict[str, Any]]:
    data = result.structured_content
    assert isinstance(data, dict), result
    if "tasks" in data:
        tasks: list[dict[str, Any]] = data["tasks"]
        return tasks
    return [data] if "user_id" in data else []


@pytest.fixture(scope="module")
def seeds(gateway: ThreadedClient, backend_url: str, agent: Agent) -> Seeds:
    own = [ok(gateway.call("create_task", {"title": f"seed {n}"}))["id"] for n in range(3)]
    ok(gateway.call("complete_task", {"task_id": own[0]}))
    cursors = []
    for status in STATUSES:
        page = ok(gateway.call("list_tasks", {"status": status, "limit": 1}))
        if page["next_cursor"]:
            cursors.append(page["next_cursor"])
    # The other agent's task: it must answer not_found to this one.
    other = sign_up(backend_url)
    with httpx.Client(base_url=backend_url, timeout=10) as http:
        made = http.post(
            "/api/v1/tasks",
            json={"title": "someone else's"},
            headers={"Authorization": f"Bearer {other.backend_token}"},
        )
        made.raise_for_status()
    return Seeds(own, int(made.json()["id"]), cursors)


def stats_on_the_primary(backend_url: str, agent: Agent) -> dict[str, int]:
    """The agent's counts from the backend's REST API, which reads the primary."""
    headers = {"Authorization": f"Bearer {agent.backend_token}"}
    tasks: list[dict[str, Any]] = []
    with httpx.Client(base_url=backend_url, timeout=30, headers=headers) as http:
        params: dict[str, Any] = {"limit": LIMIT_MAX}
        while True:
            page = http.get("/api/v1/tasks", params=params)
            page.raise_for_status()
            tasks += page.json()["tasks"]
            if not page.json()["next_cursor"]:
                break
            params["cursor"] = page.json()["next_cursor"]
    completed = sum(1 for task in tasks if task["completed"])
    return {"total": len(tasks), "completed": completed, "pending": len(tasks) - completed}


# delete_task last: it deletes the seeded tasks that the other tools' valid calls use.
TOOLS = [
    "create_task",
    "update_task",
    "complete_task",
    "list_tasks",
    "get_task",
    "get_user_stats",
    "delete_task",
]


@pytest.mark.parametrize("tool", TOOLS)
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,  # no example folder left in the tree; failures print their reproducer
)
@given(data=st.data())
def test_any_arguments_get_a_result_or_an_envelope_never_a_server_error(
    gateway: ThreadedClient,
    backend_url: str,
    agent: Agent,
    seeds: Seeds,
    tool: str,
    data: st.DataObject,
) -> None:
    arguments = data.draw(tool_arguments(tool, seeds), label="arguments")
    result = gateway.call(tool, arguments)
    # `--hypothesis-show-statistics` shows how many examples got past validation.
    if result.is_error:
        body = envelope_of(result)
        event(f"error_code={body['error_code']}")
        assert body["error_code"] != "server_error", (arguments, body)
        # The envelope never echoes a huge argument back to the agent.
        assert len(json.dumps(body)) < 20_000
        return
    event("success")
    for task in tasks_in(result):
        assert task["user_id"] == agent.id, task
        assert task["id"] != seeds.foreign_id
    if tool == "get_user_stats":
        # The agent's own writes came before, so the replica's counts are the primary's.
        assert ok(result) == stats_on_the_primary(backend_url, agent)


# One call per tool with what most often reaches an error path: wrong types, SQL, a forged
# cursor, an out-of-range id, a huge string, the caller's own secrets as arguments.
LOG_PROBES: list[dict[str, Any]] = [
    {"task_id": "1 OR 1=1", "title": "x" * 300_000, "description": ["\x00"], "status": "nope"},
    {"task_id": 2**64, "limit": -1, "cursor": "' OR '1'='1", "completed": "yes"},
    {"user_id": 1, "cursor": "A" * 5_000, "title": "", "status": {"$ne": None}},
]


def test_no_traceback_or_secret_reached_the_gateway_log(
    gateway: ThreadedClient, agent: Agent
) -> None:
    """Over what this test makes the gateway log, and whatever earlier tests left in it."""
    before = len(gateway.log.records)
    for tool in TOOLS:
        for probe in LOG_PROBES:
            planted = {**probe, "token": agent.token, "password": agent.password}
            assert gateway.call(tool, planted).is_error, (tool, planted)
    assert len(gateway.log.records) > before, (
        "the probes logged nothing, so nothing below is checked"
    )
    logged = gateway.log.text()
    assert not [r for r in gateway.log.records if r.exc_info], "a traceback was logged"
    assert "Traceback" not in logged
    assert agent.token not in logged
    assert TEST_JWT_SECRET not in logged
    assert agent.password not in logged
