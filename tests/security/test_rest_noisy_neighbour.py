"""One user floods the backend's REST API directly; another user's calls keep working. The
per-user limit is shown by counts: the flooder gets its burst plus what the rate refills in the
time the flood took, and every refusal is the envelope with retry_after_seconds."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter

import httpx

from shared.settings import Settings
from tests.support.agents import Agent, sign_up
from tests.support.processes import running_backend

TASKS = "/api/v1/tasks"
FLOOD_CONNECTIONS = 16


async def _flood_and_measure(
    url: str, flooder: Agent, bystander: Agent, requests: int
) -> tuple[Counter[int], list[float], list[float], float, dict[str, object]]:
    """The flood's statuses, the bystander's latencies quiet and during, the flood's seconds."""
    limits = httpx.Limits(max_connections=FLOOD_CONNECTIONS)
    flood_auth = {"Authorization": f"Bearer {flooder.backend_token}"}
    async with (
        httpx.AsyncClient(base_url=url, timeout=60, limits=limits, headers=flood_auth) as flood,
        httpx.AsyncClient(
            base_url=url,
            timeout=60,
            headers={"Authorization": f"Bearer {bystander.backend_token}"},
        ) as other,
    ):

        async def bystander_calls(count: int) -> list[float]:
            latencies = []
            for n in range(count):
                started = time.perf_counter()
                reply = await other.post(TASKS, json={"title": f"quiet {n}"})
                assert reply.status_code == 201, reply.text
                latencies.append(time.perf_counter() - started)
            return latencies

        quiet = await bystander_calls(20)
        statuses: Counter[int] = Counter()
        refusal: dict[str, object] = {}
        remaining = requests

        async def flooder_loop() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                reply = await flood.get(TASKS)
                statuses[reply.status_code] += 1
                if reply.status_code == 429 and not refusal:
                    refusal.update(reply.json(), retry_after=reply.headers.get("Retry-After"))

        started = time.monotonic()
        flooders = [asyncio.create_task(flooder_loop()) for _ in range(FLOOD_CONNECTIONS)]
        during = await bystander_calls(20)
        await asyncio.gather(*flooders)
        return statuses, quiet, during, time.monotonic() - started, refusal


def test_a_users_rest_flood_is_limited_and_another_users_calls_go_on(settings: Settings) -> None:
    figures = {}
    for label, rate in (("no limit", "0"), ("default limit", None)):
        env = {"DATABASE_URL": settings.database_url}
        if rate is not None:
            env["REST_RATE_LIMIT_PER_USER"] = rate
        else:  # the suite's processes inherit the default; name it for the bound below
            env["REST_RATE_LIMIT_PER_USER"] = str(Settings(_env_file=None).rest_rate_limit_per_user)
        with running_backend(env) as url:
            flooder, bystander = sign_up(url), sign_up(url)
            statuses, quiet, during, seconds, refusal = asyncio.run(
                _flood_and_measure(url, flooder, bystander, 1500)
            )
        figures[label] = (statuses, statistics.median(quiet), statistics.median(during), seconds)
        if rate is None:
            defaults = Settings(_env_file=None)
            allowed = defaults.rest_rate_limit_burst + defaults.rest_rate_limit_per_user * seconds
            assert statuses[200] <= allowed + 1, (statuses, seconds)
            assert statuses[429] >= 1500 - allowed - 1
            assert refusal["error_code"] == "rate_limited"
            details = refusal["details"]
            assert isinstance(details, dict) and details["retry_after_seconds"] >= 1
            assert refusal["retry_after"] == str(details["retry_after_seconds"])
        else:
            assert statuses == Counter({200: 1500})
    for label, (statuses, quiet_p50, during_p50, seconds) in figures.items():
        print(
            f"REST_FLOOD {label}: flood {dict(statuses)} in {seconds:.1f} s; the other user's "
            f"create_task p50 {quiet_p50 * 1000:.0f} ms quiet, {during_p50 * 1000:.0f} ms during"
        )
