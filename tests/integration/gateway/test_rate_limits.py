"""Limits per user on gateway processes: one user over the limit is refused, others go on."""

from __future__ import annotations

import asyncio

import httpx

from shared.settings import Settings
from tests.support.agents import Agent, sign_up
from tests.support.processes import running_gateway
from tests.support.raw_agents import Outcome, call_tool, new_http
from tests.support.redis import running_redis


async def calls(http: httpx.AsyncClient, url: str, agent: Agent, n: int) -> list[Outcome]:
    return [await call_tool(http, url, agent.token, "get_user_stats", {}) for _ in range(n)]


def refused_count(metrics: str) -> float:
    line = next(
        line
        for line in metrics.splitlines()
        if line.startswith('taskgate_rate_limited_total{tool="get_user_stats"}')
    )
    return float(line.rsplit(" ", 1)[1])


def span(outcomes: list[Outcome]) -> float:
    """Seconds from the first call's start to the last one's answer."""
    return max(o.started + o.latency for o in outcomes) - min(o.started for o in outcomes)


def most_allowed(burst: int, rate: float, outcomes: list[Outcome]) -> float:
    """What a bucket can let through during the calls: the burst, plus what came back while
    they ran (a slow machine only adds to it), plus one for a refill landing at the edge."""
    return burst + rate * span(outcomes) + 1


async def test_one_user_over_the_limit_is_refused_while_another_goes_on(
    settings: Settings, backend_url: str
) -> None:
    hog, quiet = sign_up(backend_url), sign_up(backend_url)
    # One token back per 5 s: twelve calls meet an empty bucket unless they take half a minute.
    env = {"RATE_LIMIT_PER_USER": "0.2", "RATE_LIMIT_BURST": "5"}
    with running_gateway(settings, backend_url, env) as url:
        async with new_http() as http:
            hogged, calm = await asyncio.gather(
                calls(http, url, hog, 12), calls(http, url, quiet, 5)
            )
            metrics = (await http.get(url.replace("/mcp", "/metrics"))).text
            refused = [o for o in hogged if o.error_code == "rate_limited"]
            assert refused, hogged
            # The wait the last refusal named is enough for a token to come back.
            await asyncio.sleep(refused[-1].body["details"]["retry_after_seconds"])
            again = await call_tool(http, url, hog.token, "get_user_stats", {})

    allowed = sum(o.ok for o in hogged)
    assert 5 <= allowed <= most_allowed(5, 0.2, hogged), hogged
    assert allowed + len(refused) == len(hogged), hogged
    assert all(0 < o.body["details"]["retry_after_seconds"] <= 5 for o in refused)
    assert all(o.ok for o in calm), calm
    assert again.ok
    assert refused_count(metrics) == len(refused)


async def test_the_limit_is_shared_by_gateways_on_one_redis(
    settings: Settings, backend_url: str
) -> None:
    hog, quiet = sign_up(backend_url), sign_up(backend_url)
    with running_redis() as redis:
        # One token back per 20 s, so the twelve calls see the burst and little more.
        env = {"CACHE_URL": redis.url, "RATE_LIMIT_PER_USER": "0.05", "RATE_LIMIT_BURST": "4"}
        with (
            running_gateway(settings, backend_url, env) as one,
            running_gateway(settings, backend_url, env) as two,
        ):
            async with new_http() as http:
                hogged: list[Outcome] = []
                for url in [one, two] * 6:
                    hogged.append(await call_tool(http, url, hog.token, "get_user_stats", {}))
                calm = await calls(http, one, quiet, 2) + await calls(http, two, quiet, 2)

    # One bucket of 4 for both gateways (counted apart, they would let 8 through).
    assert 4 <= sum(o.ok for o in hogged) <= most_allowed(4, 0.05, hogged) < 8, hogged
    refused = [o for o in hogged if not o.ok]
    assert {o.error_code for o in refused} == {"rate_limited"}
    assert {o.url for o in refused} == {one, two}
    assert all(o.ok for o in calm), calm
