"""The gateway's pool to the backend (aiohttp under httpx) on real sockets: what each failure
becomes, which calls are sent again, and what a kept connection carries."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from gateway.auth import BearerAuth
from gateway.backend_client import BackendClient, create_http_client
from shared.api import IDEMPOTENCY_HEADER
from shared.errors import ErrorCode, TaskgateError
from shared.settings import Settings
from tests.support.ports import free_port

AUTH = BearerAuth("agent-token")
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


@dataclass
class Seen:
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Seen], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    return head + (await reader.readexactly(length) if length else b"")


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        try:
            await handler(reader, writer, seen)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listening = await asyncio.start_server(connected, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        listening.close()


@asynccontextmanager
async def client(url: str, **settings: float) -> AsyncIterator[BackendClient]:
    configured = Settings(_env_file=None, fastapi_base_url=url, **settings)  # type: ignore[arg-type]
    async with create_http_client(configured) as http:
        yield BackendClient(http)


async def answer_each(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
) -> None:
    while True:
        seen.requests.append(await read_request(reader))
        writer.write(OK)
        await writer.drain()


async def test_calls_share_one_kept_connection() -> None:
    async with server(answer_each) as (url, seen), client(url) as backend:
        for _ in range(5):
            assert (await backend.send("POST", "/x", AUTH, json={"n": 1})).json() == {}
    assert (seen.connections, len(seen.requests)) == (1, 5)


async def test_a_refused_connection_is_unreachable_and_not_sent_again() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with client(url) as backend:
        with pytest.raises(TaskgateError) as caught:
            await backend.send("POST", "/x", AUTH, json={}, idempotency_key="k")
    error = caught.value
    assert error.code is ErrorCode.BACKEND_UNAVAILABLE
    assert (error.message, error.details) == (
        "the backend cannot be reached; retry shortly",
        {"reason": "ConnectError"},
    )


async def test_a_connection_dropped_after_the_request_is_sent_again_with_the_same_key() -> None:
    async def drop_first(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
    ) -> None:
        seen.requests.append(await read_request(reader))
        if len(seen.requests) > 1:
            writer.write(OK)
            await writer.drain()
        # the first: closed without an answer

    async with server(drop_first) as (url, seen), client(url) as backend:
        reply = await backend.send("POST", "/x", AUTH, json={}, idempotency_key="key-1")
    assert reply.status_code == 200
    assert len(seen.requests) == 2
    assert all(f"{IDEMPOTENCY_HEADER}: key-1".lower().encode() in r.lower() for r in seen.requests)


async def test_without_a_key_a_dropped_call_is_reported_and_not_sent_again() -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        seen.requests.append(await read_request(reader))

    async with server(drop) as (url, seen), client(url) as backend:
        with pytest.raises(TaskgateError) as caught:
            await backend.send("POST", "/x", AUTH, json={})
    assert caught.value.code is ErrorCode.BACKEND_UNAVAILABLE
    assert caught.value.details == {"reason": "RemoteProtocolError"}
    assert len(seen.requests) == 1


async def test_a_backend_that_never_answers_times_out_at_the_read_timeout() -> None:
    async def silent(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
    ) -> None:
        seen.requests.append(await read_request(reader))
        await asyncio.sleep(30)

    async with server(silent) as (url, _), client(url, backend_read_timeout=0.3) as backend:
        with pytest.raises(TaskgateError) as caught:
            await asyncio.wait_for(backend.send("POST", "/x", AUTH, json={}), 10)
    assert caught.value.details == {"reason": "ReadTimeout"}
    assert "did not answer in time" in caught.value.message


async def test_a_connection_the_backend_closed_while_idle_is_not_reused() -> None:
    async def one_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
    ) -> None:
        seen.requests.append(await read_request(reader))
        writer.write(OK)
        await writer.drain()  # then closed, as a backend's keep-alive timeout does

    async with server(one_per_connection) as (url, seen), client(url) as backend:
        for _ in range(3):
            await backend.send("POST", "/x", AUTH, json={})  # no key: one failure would raise
            await asyncio.sleep(0.05)
    assert (seen.connections, len(seen.requests)) == (3, 3)


async def test_an_idle_connection_is_let_go_after_the_keepalive() -> None:
    async with (
        server(answer_each) as (url, seen),
        client(url, backend_keepalive_seconds=0.2) as backend,
    ):
        await backend.send("GET", "/x", AUTH)
        await asyncio.sleep(0.5)
        await backend.send("GET", "/x", AUTH)
    assert seen.connections == 2


async def test_cookies_set_by_one_answer_never_ride_on_the_next_call() -> None:
    async def with_cookie(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
    ) -> None:
        while True:
            seen.requests.append(await read_request(reader))
            writer.write(
                b"HTTP/1.1 200 OK\r\nSet-Cookie: session=alice; Path=/\r\n"
                b"Content-Length: 2\r\n\r\n{}"
            )
            await writer.drain()

    async with (
        server(with_cookie) as (url, seen),
        client(url.replace("127.0.0.1", "localhost")) as backend,
    ):
        # a host name: aiohttp's own jar would keep no cookie from an IP address anyway
        await backend.send("GET", "/login", AUTH)
        await backend.send("GET", "/tasks", AUTH)
    assert b"cookie:" not in seen.requests[1].lower()


async def test_headers_and_quoted_paths_arrive_as_httpx_sent_them() -> None:
    async with server(answer_each) as (url, seen), client(url) as backend:
        await backend.send("GET", "/notes/a%2Fb", AUTH, params={"q": "x y&z"})
    first_line, *headers = seen.requests[0].split(b"\r\n\r\n")[0].split(b"\r\n")
    assert first_line == b"GET /notes/a%2Fb?q=x+y%26z HTTP/1.1"
    lowered = [h.lower() for h in headers]
    assert b"authorization: bearer agent-token" in lowered
    assert b"user-agent: taskgate-gateway" in lowered
    assert not any(h.startswith(b"cookie:") for h in lowered)


async def test_a_gzip_answer_is_decoded() -> None:
    body = gzip.compress(b'{"ok": true}')

    async def gzipped(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
    ) -> None:
        seen.requests.append(await read_request(reader))
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    async with server(gzipped) as (url, _), client(url) as backend:
        assert (await backend.send("GET", "/x", AUTH)).json() == {"ok": True}


async def test_the_connection_bound_holds_and_a_waiting_call_times_out_in_the_pool() -> None:
    release = asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        seen.requests.append(await read_request(reader))
        await release.wait()
        writer.write(OK)
        await writer.drain()

    async with (
        server(held) as (url, seen),
        client(url, backend_max_connections=1, backend_pool_timeout=0.3) as backend,
    ):
        first = asyncio.create_task(backend.send("GET", "/x", AUTH))
        await asyncio.sleep(0.1)
        with pytest.raises(TaskgateError) as caught:
            await backend.send("GET", "/x", AUTH)
        release.set()
        assert (await first).status_code == 200
    assert caught.value.code is ErrorCode.BACKEND_UNAVAILABLE
    assert seen.connections == 1
