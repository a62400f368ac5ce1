"""The memory attack of issue 11, replayed on a real gateway process with default settings.

A user with 200 tasks of long emoji titles and descriptions asks for every page size from 200
down to 1 in both statuses, then walks the pages with many distinct cursors, each spelt several
ways. The gateway's resident memory must stay under the documented bound (300 MB), and normal
pages must still be served from the cache.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from shared.settings import Settings
from taskgate.pgpair import PgPair
from tests.support.agents import Agent, sign_up
from tests.support.processes import gateway_process
from tests.support.raw_agents import call_tool, new_http
from tests.support.readmodel import insert_largest_tasks, wait_replayed

RSS_BOUND_MB = 300  # README, "Memory": the bound with default settings
TASKS = 200


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (the peak) of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


async def cache_hits(http: httpx.AsyncClient, url: str) -> float:
    metrics = (await http.get(url.replace("/mcp", "/metrics"))).text
    line = next(x for x in metrics.splitlines() if x.startswith("taskgate_cache_hits_total "))
    return float(line.split()[1])


async def attack(http: httpx.AsyncClient, url: str, agent: Agent) -> int:
    """Every page size in both statuses, then a cursor walk in three spellings; returns calls."""
    count = 0

    async def page(status: str, limit: int, cursor: str | None = None) -> str | None:
        nonlocal count
        count += 1
        arguments: dict[str, object] = {"status": status, "limit": limit}
        if cursor is not None:
            arguments["cursor"] = cursor
        outcome = await call_tool(http, url, agent.token, "list_tasks", arguments)
        assert outcome.ok, outcome
        return outcome.body["next_cursor"]  # type: ignore[no-any-return]

    for status in ("pending", "completed"):
        for limit in range(200, 0, -1):
            await page(status, limit)
    cursor = await page("all", 1)
    while cursor is not None:
        for spelling in (cursor + "====", f"{cursor[:4]}~~~{cursor[4:]}"):
            await page("all", 1, spelling)
        cursor = await page("all", 1, cursor)
    return count


async def test_a_user_asking_for_every_page_cannot_grow_the_gateway_past_its_bound(
    pg_pair: PgPair, settings: Settings, backend_url: str
) -> None:
    agent = sign_up(backend_url)
    wait_replayed(pg_pair, insert_largest_tasks(pg_pair, agent.id, TASKS))
    # Default settings, but no rate limit: the byte bounds alone must hold the memory.
    with gateway_process(settings, backend_url, {"RATE_LIMIT_PER_USER": "0"}) as (gateway, url):
        async with new_http(4) as http:
            first = await call_tool(http, url, agent.token, "get_user_stats", {})
            assert first.ok, first
            before = memory_mb(gateway.process.pid)

            calls = await attack(http, url, agent)

            after = memory_mb(gateway.process.pid)
            hits = await cache_hits(http, url)
            for _ in range(3):
                normal = await call_tool(
                    http, url, agent.token, "list_tasks", {"status": "all", "limit": 10}
                )
                assert normal.ok, normal
            hits_after = await cache_hits(http, url)

    print(
        f"MEMORY calls={calls} rss_before={before['VmRSS']:.0f}MB "
        f"rss_after={after['VmRSS']:.0f}MB peak={after['VmHWM']:.0f}MB"
    )
    assert after["VmHWM"] <= RSS_BOUND_MB, (before, after)
    assert hits_after - hits >= 2  # a normal page is cached, and served from the cache
