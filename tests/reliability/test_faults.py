"""Parts fail while agents work: the backend dies, the replica stops or lags, the primary
restarts, Redis goes away or hangs. Each test breaks its own stack (tests/reliability/conftest.py)
and repairs it in `finally`."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from typing import Any

import httpx
import redis

from taskgate.pgpair import PgPair
from tests.support.agents import sign_up_for_mcp
from tests.support.fault_stack import WRITE_BOUND, FaultStack
from tests.support.faults import replay_paused, restart_primary, start_replica, stop_replica
from tests.support.raw_agents import Agent, Outcome, new_http

WRITE_TOOLS = {"create_task", "update_task", "complete_task", "delete_task"}
READ_BOUND = 2.0  # the bound for a read while the replica is down


def agents(faults: FaultStack, count: int) -> list[Agent]:
    return [Agent(*sign_up_for_mcp(faults.backend_url)) for _ in range(count)]


def title() -> str:
    return f"task {uuid.uuid4().hex}"


def primary_ids(pair: PgPair, user_ids: list[int]) -> list[int]:
    users = ",".join(str(u) for u in user_ids)
    out = pair.psql(f"SELECT id FROM tasks WHERE user_id IN ({users}) ORDER BY id")
    return [int(line) for line in out.split()]


def acknowledged_creates(everyone: list[Agent]) -> list[Outcome]:
    return [o for a in everyone for o in a.outcomes if o.tool == "create_task" and o.ok]


def assert_no_http_failures(everyone: list[Agent]) -> None:
    bad = [o for a in everyone for o in a.outcomes if o.http_status != 200]
    assert not bad, bad[:5]


def assert_acknowledged_creates_are_stored_once(pair: PgPair, everyone: list[Agent]) -> None:
    acked = acknowledged_creates(everyone)
    stored = primary_ids(pair, [a.user_id for a in everyone])
    assert len(stored) == len(set(stored))
    missing = {o.body["id"] for o in acked} - set(stored)
    assert not missing, missing
    for outcome in acked:
        row = pair.psql(f"SELECT user_id, title FROM tasks WHERE id = {int(outcome.body['id'])}")
        assert row == f"{outcome.body['user_id']}|{outcome.arguments['title']}"


async def churn(
    agent: Agent, http: httpx.AsyncClient, url: str, stop: asyncio.Event, write_every: int = 3
) -> None:
    """Reads, with a create every `write_every` calls, until stopped."""
    n = 0
    while not stop.is_set():
        n += 1
        if n % write_every == 0:
            await agent.call(http, url, "create_task", {"title": title()})
        elif n % 2:
            await agent.call(http, url, "list_tasks", {"limit": 5})
        else:
            await agent.call(http, url, "get_user_stats", {})


async def eventually_ok(agent: Agent, http: httpx.AsyncClient, url: str, tool: str,
                        arguments: dict[str, Any], within: float = 30.0) -> Outcome:  # fmt: skip
    deadline = time.monotonic() + within
    while True:
        outcome = await agent.call(http, url, tool, arguments)
        if outcome.ok or time.monotonic() > deadline:
            return outcome
        await asyncio.sleep(0.2)


# -- the backend dies -------------------------------------------------------------------------


async def test_backend_killed_under_load_writes_answer_backend_unavailable_and_reads_go_on(
    faults: FaultStack,
) -> None:
    everyone = agents(faults, 8)
    stop = asyncio.Event()
    async with new_http() as http:
        workers = [asyncio.create_task(churn(a, http, faults.strict, stop)) for a in everyone]
        try:
            await asyncio.sleep(3)
            faults.kill_backend()
            killed_at = time.monotonic()
            await asyncio.sleep(4)
        finally:
            stop.set()
            await asyncio.gather(*workers)
            if faults.stack.backend.process.poll() is not None:
                faults.start_backend()
        before = [o for a in everyone for o in a.outcomes if o.ended < killed_at]
        after = [o for a in everyone for o in a.outcomes if o.started > killed_at]
        writes_after = [o for o in after if o.tool in WRITE_TOOLS]
        reads_after = [o for o in after if o.tool not in WRITE_TOOLS]

        assert_no_http_failures(everyone)
        assert all(o.ok for o in before), [o for o in before if not o.ok][:5]
        assert writes_after and reads_after
        assert {o.error_code for o in writes_after} == {"backend_unavailable"}
        assert max(o.latency for o in writes_after) < WRITE_BOUND
        assert all(o.ok for o in reads_after), [o for o in reads_after if not o.ok][:5]

        # The backend is back (a new process on the same port): the same gateway writes again.
        for agent in everyone:
            made = await agent.call(http, faults.strict, "create_task", {"title": title()})
            assert made.ok, made
    assert_acknowledged_creates_are_stored_once(faults.stack.pair, everyone)


# -- the replica stops ------------------------------------------------------------------------


async def test_replica_stopped_reads_answer_within_2s_or_fall_back_and_writes_go_on(
    faults: FaultStack,
) -> None:
    pair = faults.stack.pair
    everyone = agents(faults, 4)
    async with new_http() as http:
        for agent in everyone:  # the pools now hold live replica connections
            assert (await agent.call(http, faults.strict, "create_task", {"title": title()})).ok
            assert (await eventually_ok(agent, http, faults.strict, "list_tasks", {})).ok
            assert (await agent.call(http, faults.fallback, "list_tasks", {})).ok
        try:
            stop_replica(pair)
            stopped_at = time.monotonic()

            async def during(agent: Agent) -> None:
                for _ in range(3):
                    await agent.call(http, faults.strict, "create_task", {"title": title()})
                    await agent.call(http, faults.strict, "list_tasks", {})
                    await agent.call(http, faults.strict, "get_user_stats", {})
                    await agent.call(http, faults.fallback, "list_tasks", {})

            await asyncio.gather(*(during(a) for a in everyone))
        finally:
            start_replica(pair)
            pair.wait_streaming()
        outage = [o for a in everyone for o in a.outcomes if o.started > stopped_at]
        writes = [o for o in outage if o.tool == "create_task"]
        strict = [o for o in outage if o.tool != "create_task" and o.url == faults.strict]
        fallback = [o for o in outage if o.url == faults.fallback]
        assert_no_http_failures(everyone)
        assert writes and all(o.ok for o in writes), [o for o in writes if not o.ok]
        assert strict and {o.error_code for o in strict} == {"replica_unavailable"}
        assert max(o.latency for o in strict) < READ_BOUND
        assert fallback and all(o.ok for o in fallback), [o for o in fallback if not o.ok]
        assert max(o.latency for o in fallback) < READ_BOUND
        # The fallback honours read-your-writes: the last list shows every task made so far.
        for agent in everyone:
            made = [o.body["id"] for o in agent.outcomes if o.tool == "create_task" and o.ok]
            listed = [o for o in agent.outcomes if o.url == faults.fallback][-1]
            assert {t["id"] for t in listed.body["tasks"]} == set(made)

        # The replica is back: the strict gateway reads again and sees the outage's writes.
        for agent in everyone:
            page = await eventually_ok(agent, http, faults.strict, "list_tasks", {})
            made = [o.body["id"] for o in agent.outcomes if o.tool == "create_task" and o.ok]
            assert page.ok and {t["id"] for t in page.body["tasks"]} == set(made)
    assert_acknowledged_creates_are_stored_once(pair, everyone)


# -- the replica lags -------------------------------------------------------------------------


async def test_lagging_replica_still_shows_each_agent_its_own_writes(faults: FaultStack) -> None:
    pair = faults.stack.pair
    everyone = agents(faults, 6)
    async with new_http() as http:
        for agent in everyone:
            assert (await eventually_ok(agent, http, faults.strict, "list_tasks", {})).ok

        async def write_then_read(agent: Agent) -> None:
            via_fallback = await agent.call(
                http, faults.fallback, "create_task", {"title": title()}
            )
            via_strict = await agent.call(http, faults.strict, "create_task", {"title": title()})
            assert via_fallback.ok and via_strict.ok
            # The replica has replayed neither write: the lag is real.
            for made in (via_fallback, via_strict):
                assert (
                    pair.psql(
                        f"SELECT count(*) FROM tasks WHERE id = {int(made.body['id'])}",
                        replica=True,
                    )
                    == "0"
                )
            mine = {via_fallback.body["id"], via_strict.body["id"]}
            page = await agent.call(http, faults.fallback, "list_tasks", {})
            stats = await agent.call(http, faults.fallback, "get_user_stats", {})
            got = await agent.call(
                http, faults.fallback, "get_task", {"task_id": via_strict.body["id"]}
            )
            assert page.ok and {t["id"] for t in page.body["tasks"]} == mine
            assert stats.ok and stats.body["total"] == 2
            assert got.ok and got.body["id"] == via_strict.body["id"]
            # Without a fallback: a refusal that says so, never a page without the write.
            strict = await agent.call(http, faults.strict, "list_tasks", {})
            if strict.ok:
                assert {t["id"] for t in strict.body["tasks"]} == mine
            else:
                assert strict.error_code == "replica_unavailable"
                assert strict.body["details"]["lag_bytes"] > 0

        with replay_paused(pair):
            await asyncio.gather(*(write_then_read(a) for a in everyone))
            strict_reads = [o for a in everyone for o in a.outcomes[-1:] if o.tool == "list_tasks"]
            assert any(not o.ok for o in strict_reads)  # the lag did reach the strict gateway
            # A read that waits while replay resumes sees the write.
            waiting = asyncio.create_task(everyone[0].call(http, faults.strict, "list_tasks", {}))
            await asyncio.sleep(0.3)
            pair.psql("SELECT pg_wal_replay_resume()", replica=True)
            resumed = await waiting
        assert resumed.ok and len(resumed.body["tasks"]) == 2, resumed
    assert_no_http_failures(everyone)


# -- the primary restarts ---------------------------------------------------------------------


async def test_backend_recovers_from_a_primary_restart_without_its_own(faults: FaultStack) -> None:
    pair = faults.stack.pair
    everyone = agents(faults, 4)
    backend = faults.stack.backend.process
    async with new_http() as http:
        for agent in everyone:
            assert (await agent.call(http, faults.strict, "create_task", {"title": title()})).ok
        stop = asyncio.Event()

        async def write(agent: Agent) -> None:
            while not stop.is_set():
                await agent.call(http, faults.strict, "create_task", {"title": title()})
                await asyncio.sleep(0.05)

        writers = [asyncio.create_task(write(a)) for a in everyone]
        try:
            await asyncio.to_thread(restart_primary, pair)
        finally:
            stop.set()
            await asyncio.gather(*writers)
        # The very next write of each agent succeeds, through the same backend process.
        for agent in everyone:
            made = await agent.call(http, faults.strict, "create_task", {"title": title()})
            assert made.ok, made
        assert backend.poll() is None and faults.stack.backend.process is backend

        outcomes = [o for a in everyone for o in a.outcomes]
        assert {o.error_code for o in outcomes} <= {None, "backend_unavailable"}
        assert_no_http_failures(everyone)
        # The replica follows the restarted primary, and reads show the new writes.
        pair.wait_streaming()
        for agent in everyone:
            page = await eventually_ok(agent, http, faults.strict, "list_tasks", {"limit": 200})
            made_ids = {o.body["id"] for o in agent.outcomes if o.tool == "create_task" and o.ok}
            assert page.ok and made_ids <= {t["id"] for t in page.body["tasks"]}
    assert_acknowledged_creates_are_stored_once(pair, everyone)


# -- Redis goes away --------------------------------------------------------------------------


async def test_redis_down_or_hung_degrades_to_direct_reads_without_errors(
    faults: FaultStack,
) -> None:
    everyone = agents(faults, 4)
    store = redis.Redis(host="127.0.0.1", port=faults.redis.port)

    async def work(agent: Agent, http: httpx.AsyncClient) -> None:
        made = await agent.call(http, faults.cached, "create_task", {"title": title()})
        page = await agent.call(http, faults.cached, "list_tasks", {})
        stats = await agent.call(http, faults.cached, "get_user_stats", {})
        assert made.ok and page.ok and stats.ok, (made, page, stats)
        assert made.body["id"] in {t["id"] for t in page.body["tasks"]}  # read-your-writes
        assert stats.body["total"] == len(page.body["tasks"])

    async with new_http() as http:
        for agent in everyone:
            await work(agent, http)
        assert store.keys("taskgate:*")  # the gateway does cache in this Redis
        marks = len(everyone[0].outcomes)
        try:
            faults.redis.stop()
            for _ in range(3):
                await asyncio.gather(*(work(a, http) for a in everyone))
            faults.redis.start()
            store.flushall()
            assert faults.redis.process is not None
            faults.redis.process.send_signal(signal.SIGSTOP)  # hung: connections time out
            for _ in range(3):
                await asyncio.gather(*(work(a, http) for a in everyone))
        finally:
            if faults.redis.process is None:
                faults.redis.start()
            else:
                faults.redis.process.send_signal(signal.SIGCONT)
        faulty = [o for a in everyone for o in a.outcomes[marks:]]
        assert all(o.ok for o in faulty)
        assert max(o.latency for o in faulty) < 2 * READ_BOUND
        # Redis is back: after the gateway's back-off the cache fills again.
        await asyncio.sleep(3)
        for agent in everyone:
            await work(agent, http)
        assert store.keys("taskgate:*")
    assert_no_http_failures(everyone)
    store.close()
