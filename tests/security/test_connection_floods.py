"""Connection floods against the real backend and gateway processes: many sockets from one
address, trickled heads and bodies, idle keep-alive, and `GET /mcp` event streams. Every bound is
a count of sockets (held, refused, closed), read back from the attacker's side."""

from __future__ import annotations

import json
import multiprocessing
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from shared.settings import Settings
from taskgate.devstack import Component
from tests.support.agents import Agent, sign_up
from tests.support.processes import backend_process, gateway_process
from tests.support.slow_clients import PARTIAL_BODY, PARTIAL_HEAD, SlowFlood, rss_bytes
from tests.support.socket_floods import connection_flood
from tests.support.waiting import wait_until

PER_CLIENT = 40
MAX_CONNECTIONS = 120
READ_TIMEOUT = 3
LIMITS = {
    "MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    "MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT),
    "REQUEST_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT),
    "KEEP_ALIVE_TIMEOUT_SECONDS": "2",
}
ACCEPT = {"Accept": "application/json, text/event-stream"}


@dataclass
class Server:
    name: str
    component: Component
    port: int
    agent: Agent

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def another_users_call(self) -> httpx.Response:
        """A real call by a signed-in user who is not the attacker, from another address."""
        with httpx.Client(timeout=30) as http:
            if self.name == "backend":
                auth = {"Authorization": f"Bearer {self.agent.backend_token}"}
                return http.get(f"{self.url}/api/v1/tasks", headers=auth)
            call = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "get_user_stats", "arguments": {}},
            }
            headers = {**ACCEPT, "Authorization": f"Bearer {self.agent.token}"}
            return http.post(f"{self.url}/mcp", json=call, headers=headers)


@pytest.fixture(scope="module")
def servers(settings: Settings) -> Iterator[dict[str, Server]]:
    """A backend and a gateway, each with small connection bounds."""
    env = {"DATABASE_URL": settings.database_url, **LIMITS}
    with backend_process(env) as (backend, backend_url):
        agent = sign_up(backend_url)
        with gateway_process(settings, backend_url, LIMITS) as (gateway, mcp_url):
            yield {
                "backend": Server("backend", backend, _port(backend_url), agent),
                "gateway": Server("gateway", gateway, _port(mcp_url), agent),
            }


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


@pytest.fixture(params=["backend", "gateway"])
def server(request: pytest.FixtureRequest, servers: dict[str, Server]) -> Server:
    return servers[request.param]


def _healthz(server: Server) -> tuple[int, float]:
    started = time.perf_counter()
    reply = httpx.get(f"{server.url}/healthz", timeout=30)
    return reply.status_code, time.perf_counter() - started


def test_a_flood_from_one_address_holds_at_most_its_cap_and_others_are_served(
    server: Server,
) -> None:
    baseline = rss_bytes(server.component.process.pid)
    flood = SlowFlood(server.port, source="127.0.0.2", opening=PARTIAL_HEAD)
    try:
        flood.open(400)
        counts = flood.settle(lambda c: c["open"] <= PER_CLIENT)
        assert counts["open"] <= PER_CLIENT, counts
        # Each newcomer closed the address's oldest stalled socket: no read timeout has passed.
        assert counts["closed"] + counts["503"] >= 400 - PER_CLIENT, counts

        status, seconds = _healthz(server)
        assert status == 200
        # Even from the attacker's own address, a whole request gets in: a stalled one gives way.
        transport = httpx.HTTPTransport(local_address=flood.source)
        with httpx.Client(transport=transport, timeout=30) as same_address:
            assert same_address.get(f"{server.url}/healthz").status_code == 200
        call = server.another_users_call()
        assert call.status_code == 200, call.text
        print(f"FLOOD {server.name}: {dict(counts)}; /healthz {seconds * 1000:.0f} ms")
    finally:
        flood.close()
    grown = rss_bytes(server.component.process.pid) - baseline
    print(f"FLOOD {server.name}: RSS grew {grown / 2**20:.1f} MB over the flood")
    assert grown < 32 * 2**20


ANSWER_WITHIN_SECONDS = 1.0  # issue 21: answers within a second while the attack runs


def _timed(call: Callable[[httpx.Client], httpx.Response]) -> tuple[httpx.Response, float]:
    """`call` on a connection of its own (as a client that is not the attacker's opens one)."""
    with httpx.Client(timeout=30) as http:
        started = time.perf_counter()
        reply = call(http)
        return reply, time.perf_counter() - started


def _cache_counter(server: Server, name: str) -> float:
    metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    line = next(x for x in metrics.splitlines() if x.startswith(f"taskgate_cache_{name}_total "))
    return float(line.split()[1])


def _read(server: Server, limit: int) -> Callable[[httpx.Client], httpx.Response]:
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "list_tasks", "arguments": {"limit": limit}},
    }
    headers = {**ACCEPT, "Authorization": f"Bearer {server.agent.token}"}
    return lambda http: http.post(f"{server.url}/mcp", json=call, headers=headers)


def _answered(reply: httpx.Response) -> bool:
    return reply.status_code == 200 and not reply.json()["result"].get("isError")


def test_during_a_flood_that_trickles_health_and_another_users_reads_answer_within_a_second(
    servers: dict[str, Server],
) -> None:
    gateway = servers["gateway"]
    # Stalled heads and bodies from four addresses, over both caps, each trickling a byte.
    floods = [
        SlowFlood(gateway.port, source=f"127.0.2.{n}", opening=(PARTIAL_HEAD, PARTIAL_BODY)[n % 2])
        for n in range(1, 5)
    ]

    def refill() -> int:
        """New stalled sockets (the read timeout ends the old ones), a byte on each; how many
        the gateway holds."""
        for flood in floods:
            flood.open(PER_CLIENT + 10)
            flood.trickle()
        return sum(flood.read()["open"] for flood in floods)

    limit = 1 + secrets.randbelow(100)  # a page nobody asked for yet: its first read misses
    timings, held = {}, []
    try:
        held.append(refill())
        health, timings["/healthz"] = _timed(lambda http: http.get(f"{gateway.url}/healthz"))
        assert health.status_code == 200
        misses = _cache_counter(gateway, "misses")
        held.append(refill())
        uncached, timings["uncached read"] = _timed(_read(gateway, limit))
        assert _answered(uncached), uncached.text
        misses_after = _cache_counter(gateway, "misses")
        assert misses_after > misses
        hits = _cache_counter(gateway, "hits")
        held.append(refill())
        cached, timings["cached read"] = _timed(_read(gateway, limit))
        assert _answered(cached), cached.text
        assert _cache_counter(gateway, "hits") > hits
        assert _cache_counter(gateway, "misses") == misses_after
    finally:
        for flood in floods:
            flood.close()
    print(f"FLOOD gateway: stalled sockets held before each call {held}; {timings}")
    assert min(held) >= MAX_CONNECTIONS // 2, held  # the flood was there at each call
    assert all(seconds < ANSWER_WITHIN_SECONDS for seconds in timings.values()), timings


# Over both caps, every socket the gateway ends opened again at once: as the attacks bench's flood
# (tests/bench/attacks.py), scaled to this module's caps.
REOPEN_SOURCES = [f"127.0.6.{n}" for n in range(1, 5)]
REOPEN_PER_SOURCE = PER_CLIENT + 20
REOPEN_PROBE_SECONDS = 8.0
# The defaults admit a burst of NEW_CONNECTIONS_PER_CLIENT_BURST from each address, then
# NEW_CONNECTIONS_PER_CLIENT_PER_SECOND. The calls are made once the bursts are spent (while they
# last, every waiting connection here is evicted within a few ms, a caller's too), and the flood
# must try far more than the rate admits, or it did not test the limit.
_DEFAULTS = Settings(_env_file=None)
REOPEN_SPENT_BURSTS = 2 * _DEFAULTS.new_connections_per_client_burst * len(REOPEN_SOURCES)
REOPEN_AT_LEAST_PER_SECOND = (
    10 * _DEFAULTS.new_connections_per_client_per_second * len(REOPEN_SOURCES)
)


@contextmanager
def reopening_flood(port: int) -> Iterator[Any]:
    """The flood in a process of its own; yields its [open now, peak open, opened in all]."""
    context = multiprocessing.get_context("spawn")
    stop, live, results = context.Event(), context.Array("q", 3), context.Queue()
    args = (port, REOPEN_SOURCES, REOPEN_PER_SOURCE, "/mcp", 1.0, 250, True, stop, live, results)
    attacker = context.Process(target=connection_flood, args=args)
    attacker.start()
    try:
        yield live
    finally:
        stop.set()
        results.get(timeout=60)  # it closes its sockets after handing over its counts
        attacker.join(30)


def test_during_a_flood_that_reopens_every_closed_socket_health_and_reads_answer_within_a_second(
    servers: dict[str, Server],
) -> None:
    gateway = servers["gateway"]
    timings: dict[str, list[float]] = {"/healthz": [], "uncached read": [], "cached read": []}
    first_page = secrets.randbelow(200)
    with reopening_flood(gateway.port) as live:
        wait_until(lambda: live[2] >= REOPEN_SPENT_BURSTS, "the flood's first sockets")
        opened_before, started = live[2], time.monotonic()
        while time.monotonic() - started < REOPEN_PROBE_SECONDS:
            health, seconds = _timed(lambda http: http.get(f"{gateway.url}/healthz"))
            assert health.status_code == 200
            timings["/healthz"].append(seconds)
            read = _read(gateway, 1 + (first_page + len(timings["/healthz"])) % 200)  # a new page
            for kind in ("uncached read", "cached read"):
                reply, seconds = _timed(read)
                assert _answered(reply), reply.text
                timings[kind].append(seconds)
            time.sleep(0.1)
        rate = (live[2] - opened_before) / (time.monotonic() - started)
    slowest = {kind: round(max(seconds), 3) for kind, seconds in timings.items()}
    print(f"FLOOD gateway: re-opened {rate:,.0f} connections a second; slowest {slowest}")
    assert rate >= REOPEN_AT_LEAST_PER_SECOND
    assert all(seconds < ANSWER_WITHIN_SECONDS for seconds in slowest.values()), slowest


@pytest.mark.parametrize("opening", [PARTIAL_HEAD, PARTIAL_BODY], ids=["head", "body"])
def test_a_trickled_request_is_closed_whatever_trickles_in(server: Server, opening: bytes) -> None:
    flood = SlowFlood(server.port, source="127.0.0.3", opening=opening)
    try:
        flood.open(PER_CLIENT)
        assert flood.read()["open"] == PER_CLIENT
        # One byte per socket every 50 ms: bytes keep coming, but never a whole request.
        counts = flood.settle(lambda c: c["open"] == 0, timeout=READ_TIMEOUT * 20, trickle=True)
        assert counts["open"] == 0, counts
    finally:
        flood.close()


def test_at_the_server_wide_cap_a_whole_request_still_gets_in(server: Server) -> None:
    floods = [SlowFlood(server.port, source=f"127.0.1.{n}") for n in range(1, 5)]
    try:
        for flood in floods:
            flood.open(PER_CLIENT)  # 160 stalled heads in all, over MAX_CONNECTIONS
        # The oldest stalled ones made room for the later ones: never more than the cap held.
        floods[0].settle(lambda _: sum(f.read()["open"] for f in floods) <= MAX_CONNECTIONS)
        held = sum(flood.read()["open"] for flood in floods)
        assert held <= MAX_CONNECTIONS
        status, _ = _healthz(server)  # a whole request: a stalled one gives way
        assert status == 200
    finally:
        for flood in floods:
            flood.close()


def test_past_the_cap_with_every_connection_busy_a_newcomer_gets_503_and_retry_after(
    settings: Settings,
) -> None:
    # A primary that accepts connections and never answers: each /readyz stays busy.
    with socket.create_server(("127.0.0.1", 0)) as silent_primary:
        port = silent_primary.getsockname()[1]
        env = {
            "DATABASE_URL": f"postgresql+asyncpg://u:p@127.0.0.1:{port}/db",
            "DB_CONNECT_TIMEOUT": "60",
            "MAX_CONNECTIONS_PER_CLIENT": "5",
        }
        with backend_process(env) as (_, url):
            busy: list[socket.socket] = []
            try:
                reply = _probe_until_refused(_port(url), busy)
            finally:
                for sock in busy:
                    sock.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), reply
    assert b"retry-after: 1" in head.lower()
    envelope = json.loads(body)
    assert envelope["error_code"] == "rate_limited"
    assert envelope["details"]["retry_after_seconds"] == 1


def _busy_request(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock


def _still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def _probe_until_refused(port: int, busy: list[socket.socket]) -> bytes:
    """Keep five /readyz requests in service and probe with a sixth connection that sends
    nothing, until the server refuses it. A probe admitted while a request was still arriving
    (so still waiting, and evicted for the probe) is closed, and the request sent again."""
    settle = 0.5
    for _ in range(30):
        busy[:] = [sock for sock in busy if _still_open(sock)]
        if len(busy) < 5:
            while len(busy) < 5:
                busy.append(_busy_request(port))
            time.sleep(settle)  # time for the server to read them; longer each round it was not
            settle = min(settle * 2, 5.0)
        with socket.create_connection(("127.0.0.1", port), timeout=60) as probe:
            probe.settimeout(2)
            try:
                reply = probe.recv(65536)
            except TimeoutError:
                continue  # admitted: a request was still arriving
            while chunk := probe.recv(65536):
                reply += chunk
        if reply.startswith(b"HTTP/1.1 503"):
            return reply
    raise AssertionError("the server never refused a connection past its cap")


def test_an_idle_keep_alive_connection_is_closed(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
            reply += sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200")
        # Nothing more is sent: the server closes the connection (recv returns b"").
        assert sock.recv(65536) == b""


def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 408") or reply == b""


def test_get_mcp_on_a_stateless_gateway_is_405_and_opens_no_stream(
    servers: dict[str, Server],
) -> None:
    gateway = servers["gateway"]
    headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {gateway.agent.token}"}
    with httpx.Client(timeout=30) as http:
        replies = [http.get(f"{gateway.url}/mcp", headers=headers) for _ in range(300)]
        assert {r.status_code for r in replies} == {405}
        assert replies[0].headers["Allow"] == "POST"
        assert replies[0].json()["status"] == "error"
        # Every one answered and ended: the user's calls still work.
        assert gateway.another_users_call().status_code == 200


def test_the_backend_serves_a_gateways_churning_pool_without_a_new_connection_rate(
    settings: Settings,
) -> None:
    # A gateway's pool to the backend opens a connection per write above BACKEND_MAX_KEEPALIVE
    # under load: far more than the gateway's per-address rate allows one address (its burst
    # and then its rate, at the defaults). The backend answers every one.
    defaults = Settings(_env_file=None)
    opened = defaults.new_connections_per_client_burst * 2
    with backend_process({"DATABASE_URL": settings.database_url}) as (_, url):
        port = urlsplit(url).port
        assert port is not None
        statuses = []
        started = time.monotonic()
        for _ in range(opened):  # each on a new connection, as a churning pool opens them
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n")
                statuses.append(conn.recv(64).split(b" ", 2)[1])
        seconds = time.monotonic() - started
    rate = defaults.new_connections_per_client_per_second
    allowed = defaults.new_connections_per_client_burst + rate * seconds
    assert opened > allowed  # more than a rated listener would have taken
    assert statuses == [b"200"] * opened
