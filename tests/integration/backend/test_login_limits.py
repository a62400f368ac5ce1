"""Login throttling on the real backend process (real sockets, so real client addresses), and
another user's task latency while 48 logins hash their passwords at once."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager

import httpx
import pytest

from backend.security import hash_password
from shared.settings import Settings
from taskgate.pgpair import PgPair
from tests.support.agents import Agent, sign_up
from tests.support.processes import running_backend

LOGIN = "/api/v1/auth/token"


def backend_process(settings: Settings, **env: str) -> AbstractContextManager[str]:
    return running_backend({"DATABASE_URL": settings.database_url, **env})


@pytest.fixture(scope="module")
def backend_url(settings: Settings) -> Iterator[str]:
    # A first wait longer than the default second, so a slow machine cannot outlast it mid-test.
    with backend_process(settings, LOGIN_BACKOFF_SECONDS="3") as url:
        yield url


def login(http: httpx.Client, agent: Agent, password: str, **headers: str) -> httpx.Response:
    return http.post(LOGIN, data={"username": agent.email, "password": password}, headers=headers)


def test_thirty_wrong_passwords_back_off_and_the_right_one_works_after_the_wait(
    backend_url: str,
) -> None:
    victim, bystander = sign_up(backend_url), sign_up(backend_url)
    with httpx.Client(base_url=backend_url, timeout=30) as http:
        replies = [login(http, victim, "wrong-password") for _ in range(30)]
        statuses = [r.status_code for r in replies]
        assert statuses[:5] == [401] * 5
        limited = replies[-1]
        assert limited.status_code == 429, statuses
        body = limited.json()
        assert body["status"] == "error" and body["error_code"] == "rate_limited"
        wait = body["details"]["retry_after_seconds"]
        assert isinstance(wait, int) and wait >= 1
        assert limited.headers["Retry-After"] == str(wait)
        assert "wrong-password" not in limited.text and victim.email not in limited.text

        # While the account waits, even the right password is refused; other accounts log in.
        right_too_soon = login(http, victim, victim.password)
        assert right_too_soon.status_code == 429
        assert login(http, bystander, bystander.password).status_code == 200

        time.sleep(float(right_too_soon.headers["Retry-After"]))
        assert login(http, victim, victim.password).status_code == 200
        # The success starts the account afresh.
        assert login(http, victim, "wrong-password").status_code == 401


def test_a_forged_forwarded_for_header_does_not_escape_the_address_limit(
    settings: Settings,
) -> None:
    with backend_process(settings, LOGIN_ADDRESS_FAILURES="6", LOGIN_BACKOFF_SECONDS="30") as url:
        agents = [sign_up(url) for _ in range(8)]
        with httpx.Client(base_url=url, timeout=30) as http:
            statuses = [
                login(http, agent, "wrong", **{"X-Forwarded-For": f"203.0.113.{n}"}).status_code
                for n, agent in enumerate(agents[:7])
            ]
            assert statuses[:6] == [401] * 6 and statuses[6] == 429
            # The address waits for every account, the right password included.
            assert login(http, agents[7], agents[7].password).status_code == 429


async def _latency_during_logins(
    backend_url: str, reader: Agent, burst: list[Agent]
) -> tuple[list[float], float]:
    """Another user's GET /tasks latencies while `burst` log in all at once, and how long the
    burst took (seconds)."""
    async with (
        httpx.AsyncClient(base_url=backend_url, timeout=60) as logins,
        httpx.AsyncClient(
            base_url=backend_url,
            timeout=60,
            headers={"Authorization": f"Bearer {reader.backend_token}"},
        ) as tasks,
    ):
        assert (await tasks.get("/api/v1/tasks")).status_code == 200  # a warm connection

        async def log_in(agent: Agent) -> int:
            data = {"username": agent.email, "password": agent.password}
            return (await logins.post(LOGIN, data=data)).status_code

        burst_started = time.perf_counter()
        burst_done = asyncio.gather(*(log_in(agent) for agent in burst))
        latencies: list[float] = []
        while not burst_done.done():
            started = time.perf_counter()
            reply = await tasks.get("/api/v1/tasks")
            latencies.append(time.perf_counter() - started)
            assert reply.status_code == 200
            await asyncio.sleep(0.005)
        assert await burst_done == [200] * len(burst)
        return latencies, time.perf_counter() - burst_started


def burst_accounts(pg_pair: PgPair, count: int) -> list[Agent]:
    """Accounts inserted on the primary with one shared argon2 hash: 48 sign-ups would hash 48
    times before the measurement even starts."""
    password = uuid.uuid4().hex
    password_hash = hash_password(password)
    emails = [f"burst-{uuid.uuid4().hex[:12]}@example.com" for _ in range(count)]
    values = ", ".join(f"('{email}', '{password_hash}')" for email in emails)
    ids = pg_pair.psql(f"INSERT INTO users (email, password_hash) VALUES {values} RETURNING id")
    return [
        Agent(int(user_id), email, password, "", "")
        for user_id, email in zip(ids.splitlines()[:count], emails, strict=True)
    ]


def test_a_login_burst_does_not_starve_another_users_task_requests(
    settings: Settings, pg_pair: PgPair, backend_url: str
) -> None:
    reader = sign_up(backend_url)
    burst = burst_accounts(pg_pair, 48)
    figures: dict[str, tuple[float, float]] = {}
    runs: dict[str, tuple[list[float], float]] = {}
    # 6 hashes at once is what asyncio.to_thread's default pool gave on this 2-core machine.
    for label, concurrency in (("uncapped (6 threads)", "6"), ("capped (default 2)", "2")):
        # The reader asks every 5 ms, past the per-user REST limit (tested on its own).
        env = {
            "PASSWORD_HASH_CONCURRENCY": concurrency,
            "LOGIN_ADDRESS_FAILURES": "1000",
            "REST_RATE_LIMIT_PER_USER": "0",
        }
        with backend_process(settings, **env) as url:
            runs[label] = asyncio.run(_latency_during_logins(url, reader, burst))
        latencies = runs[label][0]
        figures[label] = (statistics.median(latencies) * 1000, max(latencies) * 1000)
    print(
        "LOGIN_BURST "
        + ", ".join(f"{k}: median {m:.0f} ms, max {x:.0f} ms" for k, (m, x) in figures.items())
    )
    # Not starved, measured against the burst itself (a busy machine slows both alike): the
    # reader was answered again and again while the hashes ran, and no request of its waited
    # out a large part of the burst.
    latencies, burst_seconds = runs["capped (default 2)"]
    assert len(latencies) >= 4, (latencies, burst_seconds)
    assert max(latencies) < burst_seconds / 4, (latencies, burst_seconds)
