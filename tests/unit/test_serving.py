"""How `taskgate gateway` serves HTTP: start-up heap frozen, and a loop that accepts every
queued connection at once (the 64-connection tail, tests/bench/TAIL.md). No timing: the accept
test counts loop iterations, not milliseconds."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import socket
import sys
from collections import Counter, OrderedDict
from secrets import token_urlsafe
from typing import Any, cast

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.settings import Settings
from taskgate.cli import main
from taskgate.serving import (
    FLOOD_CONNECTIONS,
    RELEASE_SETTLE_TICKS,
    SERVING_LOOP,
    ConnectionLimits,
    ConnectionTables,
    FloodRelease,
    GuardedServer,
    RateLimitedListener,
    ThrottledLog,
    WholeReplies,
    compact,
    guarded_protocol,
    throttle_accept_errors,
)

CONNECTIONS = 32
TICKS = 8  # asyncio needs three (accept, transport, connection_made); libuv accepts one a tick


@pytest.mark.parametrize(
    "command", [["gateway", "--transport", "http", "--port", "1"], ["backend", "--port", "1"]]
)
def test_each_server_freezes_its_startup_heap_and_serves_on_the_accepting_loop(
    monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("JWT_SECRET", token_urlsafe(32))
    seen: dict[str, Any] = {}

    async def fake_serve(server: uvicorn.Server, sockets: object = None) -> None:
        config = server.config
        seen.update(frozen=gc.get_freeze_count(), app=config.app, loop=config.loop)
        seen.update(http=config.http, keep_alive=config.timeout_keep_alive)

    monkeypatch.setattr(uvicorn.Server, "serve", fake_serve)
    gc.unfreeze()
    try:
        main(command)
        # Every object the app holds was built before uvicorn ran, so all are frozen.
        assert seen["frozen"] > 0
        assert gc.is_tracked(seen["app"]) and not any(seen["app"] is o for o in gc.get_objects())
    finally:
        gc.unfreeze()
    assert seen["loop"] == SERVING_LOOP
    assert seen["http"].__name__ == "GuardedHttpToolsProtocol"  # the connection bounds
    assert seen["keep_alive"] == Settings(_env_file=None).keep_alive_timeout_seconds


class _Counting(asyncio.Protocol):
    made: list[int]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(1)


async def _accepted_within(ticks: int) -> int:
    made: list[int] = []
    server = await asyncio.get_running_loop().create_server(
        lambda: type("P", (_Counting,), {"made": made})(), "127.0.0.1", 0, backlog=128
    )
    port = server.sockets[0].getsockname()[1]
    clients = []
    try:
        # Blocking connects: the kernel completes every handshake into the listen queue while
        # the loop is held here, as when many agents connect to a busy gateway at once.
        for _ in range(CONNECTIONS):
            clients.append(socket.create_connection(("127.0.0.1", port)))
        for _ in range(ticks):
            await asyncio.sleep(0)
        return len(made)
    finally:
        for client in clients:
            client.close()
        server.close()
        await server.wait_closed()


def test_the_gateway_loop_accepts_every_queued_connection_in_a_few_iterations() -> None:
    factory = Config(app="gateway.server:build_http_app", loop=SERVING_LOOP).get_loop_factory()
    assert factory is not None
    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(_accepted_within(TICKS)) == CONNECTIONS


def test_accept_errors_are_logged_once_per_interval_with_their_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    loop = asyncio.new_event_loop()
    try:
        throttle_accept_errors(loop, ThrottledLog(10.0, clock=lambda: now[0]))
        emfile = OSError(errno.EMFILE, "Too many open files")
        context = {"message": "socket.accept() out of system resource", "exception": emfile}
        with caplog.at_level(logging.WARNING, logger="taskgate.serving"):
            for _ in range(1000):
                loop.call_exception_handler(context)
            now[0] = 10.0
            loop.call_exception_handler(context)
    finally:
        loop.close()
    lines = [r.getMessage() for r in caplog.records if "accept() failed" in r.getMessage()]
    assert len(lines) == 2, lines
    assert "Too many open files" in lines[0] and "(1 since" in lines[0]
    assert "(1000 since" in lines[1]


def test_memory_is_given_back_once_after_a_flood_of_connections_ends_and_settles() -> None:
    released: list[int] = []
    release = FloodRelease(lambda: released.append(1))
    for open_now in (10, FLOOD_CONNECTIONS - 1, *[10] * RELEASE_SETTLE_TICKS):
        release.observe(open_now)
    assert released == []  # never a flood: nothing to give back
    for open_now in (FLOOD_CONNECTIONS * 2, FLOOD_CONNECTIONS):
        release.observe(open_now)
    for _ in range(RELEASE_SETTLE_TICKS - 1):
        release.observe(FLOOD_CONNECTIONS // 4)
    release.observe(FLOOD_CONNECTIONS // 2)  # back over an eighth of the peak: not settled
    for _ in range(RELEASE_SETTLE_TICKS - 1):
        release.observe(FLOOD_CONNECTIONS // 4)
    assert released == []  # the last connections are still closing: not yet
    release.observe(FLOOD_CONNECTIONS // 4)
    assert released == [1]  # at an eighth of the peak or under, for RELEASE_SETTLE_TICKS
    for open_now in (FLOOD_CONNECTIONS // 4, 1, *[0] * RELEASE_SETTLE_TICKS * 3):
        release.observe(open_now)
    assert released == [1]  # once per flood


def test_the_tables_a_flood_grew_shrink_back_to_what_they_hold_when_memory_is_given_back() -> None:
    tables, connections = ConnectionTables(), set[HttpToolsProtocol]()
    quiet = sys.getsizeof(tables.waiting), sys.getsizeof(connections)
    flood = [cast(HttpToolsProtocol, object()) for _ in range(4 * FLOOD_CONNECTIONS)]
    for n, conn in enumerate(flood):
        tables.waiting[conn] = None
        tables.waiting_by_client.setdefault(f"127.0.3.{n % 20}", OrderedDict())[conn] = None
        tables.per_client[f"127.0.3.{n % 20}"] += 1
        connections.add(conn)
    stay = flood[-3:]  # the connections still open after it
    for conn in flood[:-3]:
        del tables.waiting[conn]
        connections.discard(conn)
    grown = sys.getsizeof(tables.waiting), sys.getsizeof(connections)
    assert grown[0] > 20 * quiet[0] and grown[1] > 20 * quiet[1]  # emptied, still at flood size
    tables.compact()
    compact(connections)
    # The size of a table made afresh with what stays.
    assert sys.getsizeof(tables.waiting) == sys.getsizeof(OrderedDict.fromkeys(stay))
    assert sys.getsizeof(connections) == sys.getsizeof(set(stay))
    assert list(tables.waiting) == stay and connections == set(stay)  # order and entries kept
    assert tables.per_client == Counter(f"127.0.3.{n % 20}" for n in range(len(flood)))
    assert sum(len(mine) for mine in tables.waiting_by_client.values()) == len(flood)


def test_the_rate_limited_listener_hands_out_connections_without_nagle_and_closes_the_excess() -> (
    None
):
    # uvicorn's own listener (proto 0): asyncio would not set TCP_NODELAY on what it accepts,
    # and each reply written in two sends would wait out the client's delayed ACK.
    config = Config(app="tests.unit.test_serving:missing", host="127.0.0.1", port=0)
    settings = Settings(
        _env_file=None,
        new_connections_per_client_per_second=1,
        new_connections_per_client_burst=1,
        trusted_proxies="",
    )
    listener = RateLimitedListener.wrapping(
        config.bind_socket(), ConnectionLimits.from_settings(settings)
    )
    listener.listen()  # asyncio's create_server does this for uvicorn
    listener.setblocking(False)
    try:
        first = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        second = socket.create_connection(listener.getsockname())
        with pytest.raises(BlockingIOError):
            listener.accept()  # over the rate: closed in accept(), nothing handed out
        second.settimeout(5)
        assert second.recv(1) == b""  # the server closed it
        for sock in (first, conn, second):
            sock.close()
    finally:
        listener.close()


class _Recording:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"
CHUNKED = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"


def _replies(holds: bool = True) -> tuple[WholeReplies, _Recording]:
    recording = _Recording()
    return WholeReplies(cast(asyncio.Transport, recording), holds), recording


def test_a_reply_of_known_length_leaves_in_one_send_and_anything_else_at_once() -> None:
    replies, sent = _replies()
    replies.write(HEAD)
    assert sent.sent == []
    replies.write(b"{}")
    assert sent.sent == [HEAD + b"{}"]

    replies, sent = _replies()  # 100 Continue first: sent as it comes, the reply still whole
    replies.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    replies.write(HEAD)
    replies.write(b"{}")
    assert sent.sent == [b"HTTP/1.1 100 Continue\r\n\r\n", HEAD + b"{}"]

    replies, sent = _replies()  # streamed: each part as soon as it is written
    for part in (CHUNKED, b"2\r\n{}\r\n", b"0\r\n\r\n"):
        replies.write(part)
        assert sent.sent[-1] == part
    assert len(sent.sent) == 3

    replies, sent = _replies(holds=False)  # a HEAD request's: no body will follow
    replies.write(HEAD)
    assert sent.sent == [HEAD]

    replies, sent = _replies()  # closed between head and body (the app failed): head first
    replies.write(HEAD)
    replies.close()
    assert (sent.sent, sent.closed) == ([HEAD], True)


async def test_each_reply_of_the_guarded_server_leaves_in_one_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a real socket: JSON replies, pipelined, a HEAD request and a streamed reply all arrive
    whole, and each JSON reply's head went out in the same send as its body."""

    async def numbers(request: Any) -> JSONResponse:
        return JSONResponse({"n": int(request.query_params.get("n", "0"))})

    async def stream(_request: Any) -> StreamingResponse:
        async def parts() -> Any:
            for part in (b"one,", b"two"):
                yield part
                await asyncio.sleep(0)

        return StreamingResponse(parts(), media_type="text/plain")

    app = Starlette(
        routes=[Route("/n", numbers, methods=["GET", "HEAD"]), Route("/stream", stream)]
    )
    sends: list[bytes] = []
    real_write = asyncio.selector_events._SelectorSocketTransport.write  # type: ignore[attr-defined]

    def recording_write(self: Any, data: bytes) -> None:
        if bytes(data).startswith(b"HTTP/1.1 200"):
            sends.append(bytes(data))
        real_write(self, data)

    monkeypatch.setattr(
        asyncio.selector_events._SelectorSocketTransport,  # type: ignore[attr-defined]
        "write",
        recording_write,
    )
    settings = Settings(_env_file=None, new_connections_per_client_per_second=0)
    limits, tables = ConnectionLimits.from_settings(settings), ConnectionTables()
    config = Config(
        app, host="127.0.0.1", port=0, log_config=None, http=guarded_protocol(limits, tables)
    )
    server = GuardedServer(config, limits, tables)
    sock = config.bind_socket()
    sock.listen()  # connections queue until the server accepts them
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        reader, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        host = b"Host: t\r\n"
        writer.write(
            b"GET /n?n=1 HTTP/1.1\r\n"
            + host
            + b"\r\n"
            + b"GET /n?n=2 HTTP/1.1\r\n"
            + host
            + b"\r\n"
        )
        writer.write(b"HEAD /n HTTP/1.1\r\n" + host + b"\r\n")
        writer.write(b"GET /stream HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n")
        received = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    finally:
        server.should_exit = True
        await serving
    assert received.count(b"HTTP/1.1 200 OK") == 4, received
    assert b'{"n":1}' in received and b'{"n":2}' in received
    assert received.endswith(b"one,\r\n3\r\ntwo\r\n0\r\n\r\n"), received[-80:]
    json_sends = [s for s in sends if b"application/json" in s]
    assert len(json_sends) == 3  # two GETs and the HEAD
    assert json_sends[0].endswith(b'{"n":1}') and json_sends[1].endswith(b'{"n":2}')
    assert json_sends[2].endswith(b"\r\n\r\n")  # HEAD: the head alone, at once
