"""A TCP proxy between a gateway and the backend: it records each HTTP request's head, and can
lose one response, either by dropping the connection (a reset after the commit) or by holding the
response back until the gateway gives up (a timeout after the commit)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestHead:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class _Connection:
    buffer: bytes = b""
    drop_response: bool = False
    hold_response: bool = False


@dataclass
class RecordingProxy:
    upstream_port: int
    heads: list[RequestHead] = field(default_factory=list)
    # Set to (method, path): the next response to that request is lost with its connection.
    drop_next: tuple[str, str] | None = None
    # Set to (method, path): the next response to that request is never relayed.
    hold_next: tuple[str, str] | None = None
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def sent(self, method: str, path: str) -> list[RequestHead]:
        return [h for h in self.heads if (h.method, h.path) == (method, path)]

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        upstream_in, upstream_out = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        conn = _Connection()
        pumps = [
            asyncio.create_task(self._requests(client_in, upstream_out, conn)),
            asyncio.create_task(self._responses(upstream_in, client_out, conn)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            for writer in (client_out, upstream_out):
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Connection
    ) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            conn.buffer += data
            # Parsed before the next await, so a drop is armed before its response can arrive.
            self._parse_heads(conn)
            await writer.drain()

    async def _responses(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Connection
    ) -> None:
        while data := await reader.read(65536):
            if conn.drop_response:
                writer.transport.abort()  # the backend answered; the gateway never hears it
                return
            if conn.hold_response:
                continue  # the gateway times out waiting, and closes this connection itself
            writer.write(data)
            await writer.drain()

    def _parse_heads(self, conn: _Connection) -> None:
        while (end := conn.buffer.find(b"\r\n\r\n")) >= 0:
            lines = conn.buffer[:end].decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(conn.buffer) < end + 4 + length:
                return  # the body is still arriving
            conn.buffer = conn.buffer[end + 4 + length :]
            self.heads.append(RequestHead(method, path, headers))
            if self.drop_next == (method, path):
                self.drop_next = None
                conn.drop_response = True
            if self.hold_next == (method, path):
                self.hold_next = None
                conn.hold_response = True
