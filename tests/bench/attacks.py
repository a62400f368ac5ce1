"""Hostile traffic at the edges (issue 21), replayed against a real stack: the "after" figure for
each attack in the issue's "before" list.

    uv run python -m tests.bench.attacks                                  # the report on stdout
    uv run python -m tests.bench.attacks --out tests/bench/results/attacks.md

Run on purpose (never by pytest or CI). It starts what `taskgate dev` starts (a PostgreSQL
primary and streaming replica, the backend, one gateway, each logging to a file, every limit at
its default) on free ports, and for the login attack a second backend on the same primary behind
the shipped nginx edge proxy, trusting it as deploy/k8s/config.yaml says. The attacks are scaled
to what a 2-core machine takes in a few minutes, each phase 30 s at most:

- connections: 6,000 sockets from 20 addresses, half a stalled head and half a stalled body, a
  byte more every 4 s, each one the gateway ends opened again; meanwhile /healthz and another
  user's cached and uncached calls, every 0.2 s; the gateway's RSS and log growth;
- 2,000 trickled requests held at the backend: how long until it closed them;
- 3,000 `GET /mcp` event streams opened by one signed-in user and never closed;
- the re-armed login back-off, through nginx: what a right password gets after 55 failures;
- sign-up floods (one address, and several) and a login during them;
- registration floods (1,000 of about 60 KB, 1,000 small) and what `oauth_clients` stores;
  hostile redirect URIs and the open redirect through /authorize;
- a noisy neighbour (large uncached pages, the REST API directly, tools/list) and the other
  user's p50 and p95, quiet and during.

Every reply counted is checked: a `rate_limited` reply is a refusal, never a success, and a
measured call that fails is counted apart from the latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from shared.api import API_PREFIX, LOGIN_PATH, OAUTH_AUTHORIZE_PATH, OAUTH_REGISTER_PATH
from shared.settings import Settings
from taskgate.devstack import Stack, running_stack
from tests.bench import attack_clients
from tests.bench.attack_clients import SocketPool, partial_body, partial_head
from tests.support.agents import Agent, sign_up
from tests.support.edge_proxy import running_edge_proxy
from tests.support.oauth import authorize_params, pkce_pair
from tests.support.processes import backend_process
from tests.support.raw_agents import Outcome, call_tool, new_http
from tests.support.readmodel import insert_largest_tasks, insert_tasks, wait_replayed
from tests.support.slow_clients import rss_bytes
from tests.support.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = Settings(_env_file=None)

# Connections: over MAX_CONNECTIONS (4,096) in all and over MAX_CONNECTIONS_PER_CLIENT (256)
# from each address.
FLOOD_SOURCES = [f"127.0.3.{n}" for n in range(1, 21)]
FLOOD_PER_SOURCE = 300
FLOOD_SECONDS = 25.0
TRICKLE_SECONDS = 4.0
FLOOD_NEW_PER_ROUND = 250  # at most 2,500 new connections a second
PROBE_PAUSE_SECONDS = 0.2
SETTLE_SECONDS = 5.0  # after an attack, before RSS is read again
BACKEND_HELD = 2_000
BACKEND_SOURCES = [f"127.0.4.{n}" for n in range(1, 9)]  # 250 each, under the per-client cap
STREAMS = 3_000
# Login: the back-off's first step shortened so that 55 failures fit in a phase.
LOGIN_FAILURES = 55
LOGIN_BACKOFF_SECONDS = 0.25
# Sign-ups and registrations.
SIGNUP_FLOOD = 132
SIGNUP_SPREAD_ADDRESSES = 6  # each within its burst: every sign-up is hashed
REGISTRATIONS = 1_000
# Noisy neighbour.
NOISY_CONCURRENCY = 16
QUIET_CALLS = 100
QUIET_PAUSE_SECONDS = 0.05  # an agent's pace, well inside its own limits


def say(message: str) -> None:
    print(f"attacks: {message}", file=sys.stderr, flush=True)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def mb(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"


def quantile(latencies: list[float], q: int) -> float:
    if len(latencies) < 2:
        return latencies[0] if latencies else float("nan")
    return statistics.quantiles(latencies, n=100, method="inclusive")[q - 1]


def spread(latencies: list[float]) -> str:
    if not latencies:
        return "no answer"
    return f"p50 {ms(quantile(latencies, 50))}, max {ms(max(latencies))}"


@dataclass
class Row:
    attack: str
    before: str
    after: str


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    details: dict[str, list[str]] = field(default_factory=dict)

    def row(self, attack: str, before: str, after: str) -> None:
        self.rows.append(Row(attack, before, after))
        say(f"{attack}: {after}")

    def note(self, phase: str, line: str) -> None:
        self.details.setdefault(phase, []).append(line)
        say(f"{phase}: {line}")

    def markdown(self, header: list[str]) -> str:
        lines = [*header, "", "| attack | before (issue 21) | after (this run) |", "|---|---|---|"]
        lines += [f"| {r.attack} | {r.before} | {r.after} |" for r in self.rows]
        for phase, notes in self.details.items():
            lines += ["", f"### {phase}", "", *(f"- {n}" for n in notes)]
        return "\n".join(lines) + "\n"


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def log_bytes(logs: Path, name: str) -> tuple[int, int]:
    """Bytes and lines of a component's log and its rotated copy."""
    files = [p for p in (logs / f"{name}.log", logs / f"{name}.log.1") if p.exists()]
    return sum(p.stat().st_size for p in files), sum(p.read_bytes().count(b"\n") for p in files)


def local_client(address: str, base_url: str, **kwargs: Any) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=base_url, transport=transport, timeout=60, **kwargs)


# -- 1. the connection flood and the trickle ------------------------------------------------


@dataclass
class Probes:
    healthz: list[float] = field(default_factory=list)
    cached: list[float] = field(default_factory=list)
    uncached: list[float] = field(default_factory=list)
    failed: Counter[str] = field(default_factory=Counter)
    failed_latency: list[float] = field(default_factory=list)  # how long a failure took
    rounds: list[float] = field(default_factory=list)  # each round's three calls, in all

    @property
    def slowest(self) -> float:
        return max([*self.healthz, *self.cached, *self.uncached, *self.failed_latency], default=0)


async def probe_once(
    http: httpx.AsyncClient, stack: Stack, other: Agent, n: int, probes: Probes
) -> None:
    """/healthz, then the other user's cached and uncached read, each on a new connection."""
    started = time.monotonic()
    status: int | str
    try:
        status = (await http.get(stack.mcp_url.replace("/mcp", "/healthz"))).status_code
    except httpx.TransportError as exc:
        status = type(exc).__name__
    if status == 200:
        probes.healthz.append(time.monotonic() - started)
    else:
        probes.failed[f"healthz {status}"] += 1
        probes.failed_latency.append(time.monotonic() - started)
    cached = await call_tool(http, stack.mcp_url, other.token, "list_tasks", {"limit": 20})
    # A limit and status of its own each time: 147 keys, none of them asked twice in a TTL.
    uncached_args = {"limit": 1 + n % 49, "status": ("all", "pending", "completed")[n % 3]}
    uncached = await call_tool(http, stack.mcp_url, other.token, "list_tasks", uncached_args)
    for name, outcome, into in (
        ("cached", cached, probes.cached),
        ("uncached", uncached, probes.uncached),
    ):
        if outcome.ok:
            into.append(outcome.latency)
        else:
            probes.failed[f"{name} {outcome.http_status} {outcome.error_code}"] += 1
            probes.failed_latency.append(outcome.latency)
    probes.rounds.append(time.monotonic() - started)


async def probe_for(
    seconds: float, stack: Stack, other: Agent, on_round: Callable[[], None]
) -> Probes:
    probes = Probes()
    limits = httpx.Limits(max_keepalive_connections=0)  # a new connection each time
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            await probe_once(http, stack, other, n, probes)
            on_round()
            n += 1
            await asyncio.sleep(PROBE_PAUSE_SECONDS)
    return probes


@dataclass
class FloodRound:
    label: str
    seconds: float
    ramp: float
    live: list[int]  # open now, peak open, opened in all (the attacker's side)
    fates: dict[str, int]
    during: Probes
    after: Probes
    rss: tuple[int, int, int]  # before, peak, SETTLE_SECONDS after
    log: tuple[int, int]  # bytes and lines the gateway logged
    load: str


async def flood_round(
    stack: Stack, other: Agent, logs: Path, label: str, reopen: bool
) -> FloodRound:
    pid = stack.gateway.process.pid
    rss_before = rss_bytes(pid)
    log_before = log_bytes(logs, "gateway")
    context = multiprocessing.get_context("spawn")
    stop, live, results = context.Event(), context.Array("q", 3), context.Queue()
    attacker = context.Process(
        target=attack_clients.connection_flood,
        args=(
            port_of(stack.mcp_url),
            FLOOD_SOURCES,
            FLOOD_PER_SOURCE,
            "/mcp",
            TRICKLE_SECONDS,
            FLOOD_NEW_PER_ROUND,
            reopen,
            stop,
            live,
            results,
        ),
    )
    attacker.start()
    started = time.monotonic()
    rss_peak = rss_before
    wanted = len(FLOOD_SOURCES) * FLOOD_PER_SOURCE
    try:
        with contextlib.suppress(AssertionError):  # a slower flood is measured all the same
            await eventually(lambda: live[2] >= wanted, "the flood's sockets", 10)
        ramp = time.monotonic() - started

        def sample() -> None:
            nonlocal rss_peak
            rss_peak = max(rss_peak, rss_bytes(pid))

        during = await probe_for(FLOOD_SECONDS - ramp, stack, other, sample)
    finally:
        stop.set()
        fates = await asyncio.to_thread(results.get, True, 60)
        await asyncio.to_thread(attacker.join, 30)
    seconds = time.monotonic() - started
    load = load_average()
    await asyncio.sleep(SETTLE_SECONDS)
    rss_after = rss_bytes(pid)
    log_after = log_bytes(logs, "gateway")
    after = await probe_for(2, stack, other, lambda: None)
    return FloodRound(
        label,
        seconds,
        ramp,
        list(live[:]),
        fates,
        during,
        after,
        (rss_before, rss_peak, rss_after),
        (log_after[0] - log_before[0], log_after[1] - log_before[1]),
        load,
    )


async def connection_flood(stack: Stack, other: Agent, logs: Path, report: Report) -> None:
    phase = "connection flood and trickle (gateway)"
    quiet = await probe_for(3, stack, other, lambda: None)
    report.note(
        phase,
        f"quiet: /healthz {spread(quiet.healthz)}, cached call {spread(quiet.cached)}, "
        f"uncached call {spread(quiet.uncached)} ({len(quiet.healthz)} probes, "
        f"{sum(quiet.failed.values())} failed)",
    )
    rounds = [
        await flood_round(stack, other, logs, "opened once, as the issue's scripts", False),
        await flood_round(stack, other, logs, "re-opened as fast as the gateway closes them", True),
        # Once more as the first: does the RSS the floods left grow again, or is it reused?
        await flood_round(stack, other, logs, "opened once, a second time", False),
    ]
    emfile = sum(
        p.read_bytes().count(b"Too many open files")
        for p in (logs / "gateway.log", logs / "gateway.log.1")
        if p.exists()
    )
    for r in rounds:
        d = r.during
        report.note(
            phase,
            f"{r.label}: {len(FLOOD_SOURCES)} addresses x {FLOOD_PER_SOURCE} sockets for "
            f"{r.seconds:.0f} s (all opened after {r.ramp:.1f} s), a byte on each every "
            f"{TRICKLE_SECONDS:.0f} s: {r.live[2]:,} opened in all, at most {r.live[1]:,} open "
            f"at once from the attacker's side; how the gateway ended them: {r.fates}; load "
            f"average {r.load}",
        )
        report.note(
            phase,
            f"{r.label}, during it: /healthz {spread(d.healthz)} ({len(d.healthz)}, "
            f"{sum(x > 1 for x in d.healthz)} over 1 s); cached call {spread(d.cached)} "
            f"({len(d.cached)}, {sum(x > 1 for x in d.cached)} over 1 s); uncached call "
            f"{spread(d.uncached)} ({len(d.uncached)}, {sum(x > 1 for x in d.uncached)} over "
            f"1 s); failed: {dict(d.failed) or 'none'}, each after "
            f"{', '.join(ms(x) for x in d.failed_latency) or '-'}; a round of the three took "
            f"{spread(d.rounds)}; after it: "
            f"{dict(r.after.failed) or 'none'} failed",
        )
        report.note(
            phase,
            f"{r.label}: gateway RSS {mb(r.rss[0])} before, {mb(r.rss[1])} at the peak, "
            f"{mb(r.rss[2])} {SETTLE_SECONDS:.0f} s after; gateway.log grew {r.log[0]:,} bytes "
            f"({r.log[1]:,} lines)",
        )
        slow = sum(x > 1 for x in (*d.healthz, *d.cached, *d.uncached, *d.failed_latency))
        report.row(
            f"connection flood + trickle, {r.label}: /healthz, another user's cached and "
            "uncached calls during it",
            "timed out",
            f"/healthz {spread(d.healthz)}; cached {spread(d.cached)}; uncached "
            f"{spread(d.uncached)}; {slow} of "
            f"{len(d.healthz) + len(d.cached) + len(d.uncached) + len(d.failed_latency)} "
            f"over 1 s (slowest {ms(d.slowest)}), {sum(d.failed.values())} failed "
            f"({', '.join(d.failed) or 'none'})",
        )
        report.row(
            "... gateway RSS",
            "240 → 410 MB, and stayed after the sockets closed",
            f"{mb(r.rss[0])} → {mb(r.rss[1])} peak → {mb(r.rss[2])} after",
        )
        report.row(
            "... gateway.log",
            "122 MB in 45 s (270,335 lines of EMFILE)",
            f"{r.log[0] / 1024:,.1f} KB in {r.seconds:.0f} s ({r.log[1]:,} lines)",
        )
    report.note(phase, f"'Too many open files' in gateway.log after the three: {emfile}")


def backend_trickle(stack: Stack, report: Report) -> None:
    phase = "trickled requests held at the backend"
    pool = SocketPool(port_of(stack.backend_url))
    try:
        for n in range(BACKEND_HELD):
            source = BACKEND_SOURCES[n % len(BACKEND_SOURCES)]
            pool.connect(source, (partial_head, partial_body)[n % 2]("/api/v1/users"))
        held = len(pool.held)
        started = last_trickle = time.monotonic()
        while pool.held and time.monotonic() - started < 30:
            pool.poll(0.1)
            if time.monotonic() - last_trickle >= TRICKLE_SECONDS:
                pool.trickle()
                last_trickle = time.monotonic()
        seconds = time.monotonic() - started
        still = len(pool.held)
    finally:
        pool.close()
    report.note(
        phase,
        f"{held:,} of {BACKEND_HELD:,} sockets connected, a byte more on each every "
        f"{TRICKLE_SECONDS:.0f} s; after {seconds:.1f} s {still} still open; how the backend "
        f"ended them: {dict(pool.fates)}; REQUEST_READ_TIMEOUT_SECONDS "
        f"{DEFAULTS.request_read_timeout_seconds:g}; load average {load_average()}",
    )
    report.row(
        "2,000 trickled requests at the backend",
        "held open with no end",
        f"{still} of {held:,} open after {seconds:.1f} s ({pool.fates['408']:,} got 408)",
    )


def event_streams(stack: Stack, noisy: Agent, report: Report, sources: list[str]) -> None:
    phase = "GET /mcp event streams (gateway)"
    where = "one address" if len(sources) == 1 else f"{len(sources)} addresses"
    pid = stack.gateway.process.pid
    port = port_of(stack.mcp_url)
    request = (
        f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        f"Authorization: Bearer {noisy.token}\r\n\r\n"
    ).encode()
    rss_before = rss_peak = rss_bytes(pid)
    pool = SocketPool(port)
    started = time.monotonic()
    try:
        for n in range(STREAMS):
            pool.connect(sources[n % len(sources)], request)
            if n % 100 == 99:
                pool.poll(0)
                rss_peak = max(rss_peak, rss_bytes(pid))
        while (
            sum(pool.answered().values()) + pool.ended_unanswered() < STREAMS
            and time.monotonic() - started < 30
        ):
            pool.poll(0.1)
            rss_peak = max(rss_peak, rss_bytes(pid))
        seconds = time.monotonic() - started
        statuses = pool.answered()
        held = len(pool.held)
        # What an endless stream would not do: every socket ends once it idles past keep-alive.
        linger = DEFAULTS.keep_alive_timeout_seconds + 2
        idle_until = time.monotonic() + linger
        while pool.held and time.monotonic() < idle_until:
            pool.poll(0.1)
        lingering = len(pool.held)
    finally:
        pool.close()
    time.sleep(SETTLE_SECONDS)
    rss_after = rss_bytes(pid)
    report.note(
        phase,
        f"{STREAMS:,} GET /mcp from {where} with the user's bearer, none closed by the "
        f"client: statuses {dict(statuses)} in {seconds:.1f} s; open when the last was "
        f"answered {held}, {linger:.0f} s later {lingering} (how the gateway ended them: "
        f"{dict(pool.fates)}); load average {load_average()}",
    )
    report.row(
        f"3,000 GET /mcp streams, one user, from {where}",
        "endless streams, RSS 146 → 386 MB",
        f"{dict(statuses)}, {pool.fates['closed']:,} closed by the gateway unanswered "
        f"(the address's cap); open {held} → {lingering} {linger:.0f} s later; RSS "
        f"{mb(rss_before)} → {mb(rss_peak)} peak → {mb(rss_after)}",
    )


# -- 2. logins, sign-ups, registrations -----------------------------------------------------


def _k8s_trusted_proxies() -> str:
    docs = yaml.safe_load_all((REPO / "deploy/k8s/config.yaml").read_text())
    (config,) = [d for d in docs if d and d["kind"] == "ConfigMap"]
    return str(config["data"]["TRUSTED_PROXIES"])


def _login(http: httpx.Client, email: str, password: str) -> httpx.Response:
    # A forged X-Forwarded-For: the proxy replaces it with the address it saw.
    forged = {"X-Forwarded-For": f"198.51.100.{uuid.uuid4().int % 250}"}
    return http.post(LOGIN_PATH, data={"username": email, "password": password}, headers=forged)


def _refusal(reply: httpx.Response) -> str:
    """`429 (retry N s)` for the envelope; anything else as its status and text."""
    if reply.status_code == 429:
        body = reply.json()
        assert body["error_code"] == "rate_limited", body
        wait = body["details"]["retry_after_seconds"]
        assert reply.headers["Retry-After"] == str(wait), reply.headers
        return f"429 (retry {wait} s)"
    return str(reply.status_code)


def login_backoff(stack: Stack, report: Report) -> None:
    phase = "re-armed login back-off, through the shipped nginx"
    env = {
        "DATABASE_URL": stack.env["DATABASE_URL"],
        "TRUSTED_PROXIES": _k8s_trusted_proxies(),
        "LOGIN_BACKOFF_SECONDS": str(LOGIN_BACKOFF_SECONDS),
    }
    with (
        backend_process(env) as (_, backend_url),
        running_edge_proxy(backend_url.removeprefix("http://")) as proxy,
    ):
        users = []
        with local_client("127.0.0.3", proxy) as http:
            for _ in range(3):
                email, password = f"victim-{uuid.uuid4().hex[:12]}@example.com", uuid.uuid4().hex
                created = http.post(
                    f"{API_PREFIX}/users", json={"email": email, "password": password}
                )
                assert created.status_code == 201, created.text
                users.append((email, password))
        started = time.monotonic()
        with local_client("127.0.0.4", proxy) as attacker:
            failures, refused = 0, 0
            while failures < LOGIN_FAILURES:
                reply = _login(attacker, f"guess-{failures}@example.com", "wrong")
                if reply.status_code == 401:
                    failures += 1
                    continue
                assert reply.status_code == 429, reply.text
                refused += 1
                time.sleep(reply.json()["details"]["retry_after_seconds"])
            attack_seconds = time.monotonic() - started
            right_reply = _login(attacker, *users[0])
            right = _refusal(right_reply)
            with local_client("127.0.0.5", proxy) as elsewhere:
                other_address = _refusal(_login(elsewhere, *users[1]))
            seconds = (
                right_reply.json()["details"]["retry_after_seconds"]
                if right_reply.status_code == 429
                else 0
            )
            time.sleep(seconds)  # as long as the server said
            in_a_row = [_refusal(_login(attacker, *user)) for user in users]
    report.note(
        phase,
        f"{LOGIN_FAILURES} wrong passwords from 127.0.0.4 through nginx (forged X-Forwarded-For "
        f"on each), {refused} refusals waited out, in {attack_seconds:.1f} s; "
        f"TRUSTED_PROXIES={_k8s_trusted_proxies()!r} from deploy/k8s/config.yaml; "
        f"LOGIN_BACKOFF_SECONDS={LOGIN_BACKOFF_SECONDS} (default "
        f"{DEFAULTS.login_backoff_seconds:g}), the rest at defaults; load average {load_average()}",
    )
    report.note(
        phase,
        f"a right password from the attacked address at once: {right}; from another address: "
        f"{other_address}; after the wait ({seconds} s), three right passwords in a row from the "
        f"attacked address: {in_a_row}",
    )
    report.row(
        "right password after 55+ failures (k8s config)",
        "429 with 64 s for two users; 65 s later one got in, the next 429 64 s again; "
        "every other client behind the Ingress locked out too",
        f"same address at once: {right}; another address: {other_address}; after the wait: "
        f"{', '.join(in_a_row)}",
    )


async def _timed_login(http: httpx.AsyncClient, agent: Agent) -> float:
    started = time.monotonic()
    reply = await http.post(LOGIN_PATH, data={"username": agent.email, "password": agent.password})
    assert reply.status_code == 200, reply.text
    return time.monotonic() - started


async def _sign_up_flood(
    backend_url: str, other: Agent, addresses: list[str], count: int
) -> tuple[Counter[str], list[float], float]:
    """`count` sign-ups spread over `addresses`, and three logins by `other` meanwhile."""
    clients = [
        httpx.AsyncClient(
            base_url=backend_url,
            timeout=120,
            transport=httpx.AsyncHTTPTransport(local_address=address),
            limits=httpx.Limits(max_connections=32),
        )
        for address in addresses
    ]
    statuses: Counter[str] = Counter()

    async def one(n: int) -> None:
        email = f"flood-{uuid.uuid4().hex}@example.com"
        reply = await clients[n % len(clients)].post(
            f"{API_PREFIX}/users", json={"email": email, "password": "p" * 12}
        )
        if reply.status_code == 429:
            assert reply.json()["error_code"] == "rate_limited", reply.text
        statuses[str(reply.status_code)] += 1

    started = time.monotonic()
    async with httpx.AsyncClient(base_url=backend_url, timeout=120) as login_http:
        flood = [asyncio.create_task(one(n)) for n in range(count)]
        await asyncio.sleep(0.3)  # every sign-up sent first
        logins = [await _timed_login(login_http, other) for _ in range(3)]
        await asyncio.gather(*flood)
    for client in clients:
        await client.aclose()
    return statuses, logins, time.monotonic() - started


async def sign_up_floods(stack: Stack, other: Agent, report: Report) -> None:
    phase = "sign-up floods (backend, default limits)"
    async with httpx.AsyncClient(base_url=stack.backend_url, timeout=60) as http:
        quiet = [await _timed_login(http, other) for _ in range(5)]
    one_address = await _sign_up_flood(stack.backend_url, other, ["127.0.6.1"], SIGNUP_FLOOD)
    spread_addresses = [f"127.0.7.{n}" for n in range(1, SIGNUP_SPREAD_ADDRESSES + 1)]
    # As many as the addresses' bursts hold: every one of them is hashed.
    many = await _sign_up_flood(
        stack.backend_url,
        other,
        spread_addresses,
        DEFAULTS.signup_address_burst * SIGNUP_SPREAD_ADDRESSES,
    )
    for label, (statuses, logins, seconds) in (
        ("from one address", one_address),
        (f"from {SIGNUP_SPREAD_ADDRESSES} addresses, each within its burst", many),
    ):
        report.note(
            phase,
            f"{sum(statuses.values())} sign-ups {label}: {dict(statuses)} in {seconds:.1f} s; a "
            f"right login meanwhile {', '.join(ms(x) for x in logins)} (quiet "
            f"{ms(statistics.median(quiet))}); load average {load_average()}",
        )
    report.row(
        "sign-up flood: a right login during it",
        "19 s (0.23 s quiet); 132 sign-ups, all created",
        f"quiet {ms(statistics.median(quiet))}; 132 from one address: "
        f"{dict(one_address[0])}, login {ms(max(one_address[1]))} at most; "
        f"{sum(many[0].values())} spread over {SIGNUP_SPREAD_ADDRESSES} addresses: "
        f"{dict(many[0])}, login {ms(max(many[1]))} at most",
    )


def _client_rows(stack: Stack) -> tuple[int, int, int]:
    """oauth_clients: rows, bytes of their metadata, and the table's size on disk."""
    row = stack.pair.psql(
        "SELECT count(*), coalesce(sum(pg_column_size(info)), 0), "
        "pg_total_relation_size('oauth_clients') FROM oauth_clients"
    )
    rows, data, table = (int(x) for x in row.split("|"))
    return rows, data, table


def _registration(redirect_uri: str, **extra: object) -> dict[str, object]:
    return {"redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none", **extra}


def _register_many(address: str, backend_url: str, body: bytes) -> Counter[str]:
    """REGISTRATIONS registrations of `body` from `address`: the statuses (a 429 checked to be
    the envelope with Retry-After), or the transport error when the server cut one off."""
    statuses: Counter[str] = Counter()
    headers = {"Content-Type": "application/json"}
    with local_client(address, backend_url) as http:
        for _ in range(REGISTRATIONS):
            try:
                reply = http.post(OAUTH_REGISTER_PATH, content=body, headers=headers)
            except httpx.TransportError as exc:
                statuses[type(exc).__name__] += 1
                continue
            if reply.status_code == 429:
                _refusal(reply)
            statuses[str(reply.status_code)] += 1
    return statuses


def registration_floods(stack: Stack, report: Report) -> None:
    phase = "dynamic client registration floods (backend, default limits)"
    before = _client_rows(stack)
    big = json.dumps(_registration("http://127.0.0.1:4567/cb", client_name="x" * 60_000))
    started = time.monotonic()
    large = _register_many("127.0.8.1", stack.backend_url, big.encode())
    large_seconds = time.monotonic() - started
    started = time.monotonic()
    small_body = json.dumps(_registration("http://127.0.0.1:4567/cb")).encode()
    small = _register_many("127.0.8.2", stack.backend_url, small_body)
    small_seconds = time.monotonic() - started
    after = _client_rows(stack)
    report.note(
        phase,
        f"{REGISTRATIONS:,} registrations of {len(big):,} bytes from one address: {dict(large)} "
        f"in {large_seconds:.1f} s; {REGISTRATIONS:,} small ones from another: {dict(small)} in "
        f"{small_seconds:.1f} s; load average {load_average()}",
    )
    report.note(
        phase,
        f"oauth_clients: {before[0]} rows, {before[1]:,} bytes of metadata, {mb(before[2])} on "
        f"disk before; {after[0]} rows, {after[1]:,} bytes, {mb(after[2])} after",
    )
    report.row(
        "1,000 registrations of ~60 KB",
        "all 201 in 7.4 s, no 429; oauth_clients grew to 63 MB",
        f"{dict(large)}; then 1,000 small: {dict(small)}; oauth_clients +{after[0] - before[0]} "
        f"rows, +{after[1] - before[1]:,} bytes of metadata",
    )
    hostile = [
        "ws://127.0.0.1:4567/callback",
        "https://google.com@evil.example/callback",
        "https://client.example/callback#fragment",
        "http://127.0.0.1:4567/callback#",
        "javascript:alert(1)",
    ]
    evil = "https://evil.example/callback"
    with local_client("127.0.8.3", stack.backend_url) as http:
        refused = Counter(
            str(http.post(OAUTH_REGISTER_PATH, json=_registration(uri)).status_code)
            for uri in hostile
        )
        created = http.post(OAUTH_REGISTER_PATH, json=_registration(evil))
        assert created.status_code == 201, created.text
        client_id = str(created.json()["client_id"])
        _, challenge = pkce_pair()
        valid = authorize_params(client_id, evil, challenge, None, "s")
        outcomes = []
        for label, params in (
            ("a bad scope", {**valid, "scope": "\x01"}),
            ("no PKCE", {k: v for k, v in valid.items() if k != "code_challenge"}),
            ("a valid request", valid),
        ):
            reply = http.get(OAUTH_AUTHORIZE_PATH, params=params)
            where = urlsplit(reply.headers.get("Location", "")).netloc or "no Location"
            outcomes.append(f"{label}: {reply.status_code}, {where}")
    report.note(
        phase,
        f"hostile redirect URIs ({', '.join(hostile)}): {dict(refused)}; /authorize for a "
        f"registered {evil} client that nobody logged in through: {'; '.join(outcomes)}",
    )
    report.row(
        "open redirect through /authorize; hostile redirect URIs",
        "302 to https://evil.example without a login; ws://, userinfo, fragments accepted",
        f"{'; '.join(outcomes)}; hostile URIs {dict(refused)}",
    )


# -- 3. the noisy neighbour -----------------------------------------------------------------


@dataclass
class Neighbour:
    quiet: list[float]
    during: list[float]
    failed: int
    flood: list[int]  # ok, refused, other
    seconds: float
    load: str

    def p(self, q: int, latencies: list[float]) -> float:
        return quantile(latencies, q)

    @property
    def ratio(self) -> float:
        return self.p(95, self.during) / self.p(95, self.quiet)


async def _quiet_calls(
    http: httpx.AsyncClient, call: Callable[[httpx.AsyncClient, int], Awaitable[Outcome]]
) -> tuple[list[float], int]:
    latencies, failed = [], 0
    for n in range(QUIET_CALLS):
        outcome = await call(http, n)
        if outcome.ok:
            latencies.append(outcome.latency)
        else:
            failed += 1
        await asyncio.sleep(QUIET_PAUSE_SECONDS)
    return latencies, failed


async def _neighbour(
    kind: str,
    url: str,
    token: str,
    call: Callable[[httpx.AsyncClient, int], Awaitable[Outcome]],
) -> Neighbour:
    context = multiprocessing.get_context("spawn")
    stop, counts = context.Event(), context.Array("q", 3)
    async with new_http() as http:
        await call(http, 0)  # warm
        quiet, quiet_failed = await _quiet_calls(http, call)
        flood = context.Process(
            target=attack_clients.noisy_tenant,
            args=(kind, url, token, NOISY_CONCURRENCY, stop, counts),
        )
        flood.start()
        started = time.monotonic()
        try:
            await eventually(lambda: sum(counts[:]) >= NOISY_CONCURRENCY, "the flood", 20)
            during, failed = await _quiet_calls(http, call)
        finally:
            stop.set()
            await asyncio.to_thread(flood.join, 60)
    return Neighbour(
        quiet,
        during,
        quiet_failed + failed,
        list(counts[:]),
        time.monotonic() - started,
        load_average(),
    )


async def noisy_neighbour(
    stack: Stack, noisy: Agent, other: Agent, report: Report, kinds: set[str] | None = None
) -> None:
    replicas = stack.pair.replicas
    phase = f"noisy neighbour (two users on one stack, {replicas} replica(s), default limits)"
    insert_tasks(stack.pair, other.id, 30)
    wait_replayed(stack.pair, insert_largest_tasks(stack.pair, noisy.id, 200))
    url = stack.mcp_url

    async def list_page(http: httpx.AsyncClient, n: int) -> Outcome:
        return await call_tool(http, url, other.token, "list_tasks", {"limit": 20})

    async def create(http: httpx.AsyncClient, n: int) -> Outcome:
        title = f"neighbour {n} {uuid.uuid4().hex[:6]}"
        outcome = await call_tool(http, url, other.token, "create_task", {"title": title})
        assert not outcome.ok or outcome.body["title"] == title, outcome
        return outcome

    floods: list[tuple[str, str, str, str, str, Any]] = [
        (
            "large pages",
            url,
            noisy.token,
            f"large uncached pages, {replicas} replica(s)",
            "p50 12 ms → 1,659 ms" if replicas == 1 else "p95 22 ms → 447 ms",
            list_page,
        ),
        (
            "rest",
            f"{stack.backend_url}{API_PREFIX}/tasks",
            noisy.backend_token,
            "the REST API directly (GET /tasks), other user's create_task",
            "create_task p50 22 ms → 607 ms (flood: 91 req/s, all 200)",
            create,
        ),
        (
            "tools/list",
            url,
            noisy.token,
            "tools/list",
            "p50 12 ms → 87 ms (2,193 calls in 8 s)",
            list_page,
        ),
    ]
    for kind, target, token, label, before, call in floods:
        if kinds is not None and kind not in kinds:
            continue
        f = await _neighbour(kind, target, token, call)
        ok, refused, other_outcomes = f.flood
        rate = ok / f.seconds if f.seconds else 0.0
        report.note(
            phase,
            f"{label}: quiet p50 {ms(f.p(50, f.quiet))} p95 {ms(f.p(95, f.quiet))}; during "
            f"p50 {ms(f.p(50, f.during))} p95 {ms(f.p(95, f.during))} ({f.ratio:.2f}x p95); "
            f"{f.failed} of the other user's calls failed; the flood ({NOISY_CONCURRENCY} at "
            f"once, {f.seconds:.0f} s): {ok:,} answered ({rate:,.0f}/s), {refused:,} refused, "
            f"{other_outcomes} other; load average {f.load}",
        )
        report.row(
            f"noisy neighbour: {label}",
            before,
            f"p50 {ms(f.p(50, f.quiet))} → {ms(f.p(50, f.during))}, p95 {ms(f.p(95, f.quiet))} "
            f"→ {ms(f.p(95, f.during))} ({f.ratio:.2f}x); flood {ok:,} answered, "
            f"{refused:,} refused",
        )


# -- the run --------------------------------------------------------------------------------


@contextmanager
def attack_stack(replicas: int = 1) -> Iterator[tuple[Stack, Path]]:
    """What `taskgate dev` runs, with default limits and a log file per process."""
    root = Path(tempfile.mkdtemp(prefix="taskgate-attacks-"))
    logs = root / "logs"
    logs.mkdir()
    try:
        with running_stack(root, log_dir=logs, replicas=replicas) as stack:
            yield stack, logs
    finally:
        shutil.rmtree(root, ignore_errors=True)


PHASES = (
    "noisy",
    "noisy-2-replicas",
    "connections",
    "streams",
    "trickle",
    "sign-ups",
    "registrations",
    "login",
)


async def run_two_replicas(stack: Stack, report: Report) -> None:
    noisy = sign_up(stack.backend_url, stack.mcp_url)
    other = sign_up(stack.backend_url, stack.mcp_url)
    await noisy_neighbour(stack, noisy, other, report, {"large pages"})


async def run(stack: Stack, logs: Path, report: Report, only: set[str]) -> None:
    noisy = sign_up(stack.backend_url, stack.mcp_url)
    other = sign_up(stack.backend_url, stack.mcp_url)
    if "noisy" in only:
        await noisy_neighbour(stack, noisy, other, report)
    if "connections" in only:
        await connection_flood(stack, other, logs, report)
    if "streams" in only:
        event_streams(stack, noisy, report, ["127.0.5.1"])
        event_streams(stack, noisy, report, [f"127.0.5.{n}" for n in range(2, 14)])
    if "trickle" in only:
        backend_trickle(stack, report)
    if "sign-ups" in only:
        await sign_up_floods(stack, other, report)
    if "registrations" in only:
        registration_floods(stack, report)
    if "login" in only:
        login_backoff(stack, report)


def header(started: datetime, load_before: str, load_after: str, seconds: float) -> list[str]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = (
        " (with uncommitted changes)"
        if git("status", "--porcelain", "--", ".", ":!tests/bench/results")
        else ""
    )
    return [
        "# Hostile traffic at the edges (issue 21): before and after",
        "",
        f"Measured {started:%Y-%m-%d %H:%M} UTC on commit {git('rev-parse', '--short', 'HEAD')}"
        f"{dirty}, branch {git('rev-parse', '--abbrev-ref', 'HEAD')}, with "
        "`uv run python -m tests.bench.attacks`, in "
        f"{seconds:.0f} s. {os.cpu_count()} CPUs, shared with other work: load average "
        f"{load_before} at the start, {load_after} at the end (each phase's is beside its "
        "figures). Before: the figures issue 21 reports from its own `taskgate dev` runs.",
        "",
        "One stack as `taskgate dev` starts it (primary, one streaming replica, backend, gateway; "
        "every limit at its default), attacked from 127.x addresses of this machine; see the "
        "module's docstring for each attack's scale.",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.attacks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, help="also write the report (markdown) here")
    parser.add_argument(
        "--only",
        action="append",
        choices=PHASES,
        help="run only this attack (repeatable); all of them by default",
    )
    args = parser.parse_args(argv)
    started_at = datetime.now(UTC)
    started = time.monotonic()
    load_before = load_average()
    report = Report()
    only = set(args.only or PHASES)
    if only - {"noisy-2-replicas"}:
        with attack_stack() as (stack, logs):
            asyncio.run(run(stack, logs, report, only))
    if "noisy-2-replicas" in only:
        with attack_stack(replicas=2) as (stack, _):
            asyncio.run(run_two_replicas(stack, report))
    text = report.markdown(
        header(started_at, load_before, load_average(), time.monotonic() - started)
    )
    print(text)
    if args.out:
        args.out.write_text(text)
        say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
