"""Connection floods against the real backend and gateway processes: many sockets from one
address, trickled heads and bodies, idle keep-alive, and `GET /mcp` event streams. Every bound is
a count of sockets (held, refused, closed), read back from the attacker's side."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest

from shared.settings import Settings
from taskgate.devstack import Component
from tests.support.agents import Agent, sign_up
from tests.support.processes import backend_process, gateway_process
from tests.support.slow_clients import PARTIAL_BODY, PARTIAL_HEAD, SlowFlood, rss_bytes

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
        assert counts["open"] + counts["closed"] + counts["503"] == 400
        # The address's other sockets were refused at once: no read timeout has passed yet.
        assert counts["closed"] + counts["503"] >= 400 - PER_CLIENT, counts

        status, seconds = _healthz(server)
        assert status == 200
        call = server.another_users_call()
        assert call.status_code == 200, call.text
        print(f"FLOOD {server.name}: {dict(counts)}; /healthz {seconds * 1000:.0f} ms")
    finally:
        flood.close()
    grown = rss_bytes(server.component.process.pid) - baseline
    print(f"FLOOD {server.name}: RSS grew {grown / 2**20:.1f} MB over the flood")
    assert grown < 32 * 2**20


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


def test_the_server_wide_cap_refuses_with_503_and_retry_after(server: Server) -> None:
    floods = [SlowFlood(server.port, source=f"127.0.1.{n}") for n in range(1, 5)]
    try:
        for flood in floods:
            flood.open(PER_CLIENT)  # 160 in all, over MAX_CONNECTIONS
        # The last 40 came after MAX_CONNECTIONS others: each is refused.
        last = floods[-1].settle(lambda c: c["open"] == 0, timeout=READ_TIMEOUT)
        assert last["open"] == 0, last
        assert sum(flood.read()["open"] for flood in floods) <= MAX_CONNECTIONS
        # A newcomer is answered before it sends anything: 503, Retry-After, the envelope. (One
        # that sent a request first may see a reset instead: its unread bytes make the close a
        # reset.)
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), reply
        assert b"retry-after: 1" in head.lower()
        envelope = json.loads(body)
        assert envelope["error_code"] == "rate_limited"
        assert envelope["details"]["retry_after_seconds"] == 1
    finally:
        for flood in floods:
            flood.close()


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
