"""A cheap load generator: raw HTTP/1.1 keep-alive connections carrying MCP JSON-RPC requests.

One connection per client session, one request in flight per connection (a closed loop, as an
agent waits for each tool result). Requests are pre-encoded bytes, so the client spends a few
tens of microseconds per call and leaves the two cores to the servers it measures. The requests
are the ones the official MCP Client sends (checked by `tests.bench.run --validate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from dataclasses import dataclass
from typing import Any

MODERN_VERSION = "2026-07-28"  # what mcp 2.x's Client negotiates with the gateway (server/discover)
HANDSHAKE_VERSION = "2025-06-18"  # the initialize handshake, for the mcp 1.x peer

MCP_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
    "io.modelcontextprotocol/clientInfo": {"name": "taskgate-bench", "version": "0.1.0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def json(self) -> Any:
        if self.headers.get(b"content-type", b"").startswith(b"text/event-stream"):
            # The last `data:` line of an SSE body is the JSON-RPC reply.
            data = [line[5:] for line in self.body.split(b"\n") if line.startswith(b"data:")]
            return json.loads(data[-1])
        return json.loads(self.body)


def encode_request(
    method: str, host: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


class Connection:
    """One keep-alive HTTP/1.1 connection; `send` writes a request and reads its whole reply."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()

    async def send(self, raw: bytes) -> Reply:
        assert self._reader is not None and self._writer is not None
        self._writer.write(raw)
        reader = self._reader
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status = int(lines[0][9:12])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"content-length" in headers:
            body = await reader.readexactly(int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding") == b"chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(parts)
        else:
            body = b""
        return Reply(status, headers, body)


class McpEndpoint:
    """Builds the MCP requests for one server URL and bearer token."""

    def __init__(self, host: str, port: int, path: str, token: str, modern: bool) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.token = token
        self.modern = modern
        self.session_id: str | None = None
        self.version = MODERN_VERSION if modern else HANDSHAKE_VERSION

    def _headers(self, method: str, name: str | None) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            "Mcp-Protocol-Version": self.version,
        }
        if self.modern:
            headers["Mcp-Method"] = method
            if name is not None:
                headers["Mcp-Name"] = name
        if self.session_id is not None:
            headers["Mcp-Session-Id"] = self.session_id
        return headers

    def rpc(self, method: str, params: dict[str, Any] | None = None, rid: int | None = 1) -> bytes:
        params = dict(params or {})
        if self.modern:
            params["_meta"] = MCP_META
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if rid is not None:
            message["id"] = rid
        if params:
            message["params"] = params
        body = json.dumps(message, separators=(",", ":")).encode()
        name = params.get("name") if method == "tools/call" else None
        return encode_request(
            "POST", f"{self.host}:{self.port}", self.path, self._headers(method, name), body
        )

    def call_tool(self, tool: str, arguments: dict[str, Any]) -> bytes:
        return self.rpc("tools/call", {"name": tool, "arguments": arguments})

    async def start(self, conn: Connection) -> None:
        """What a client does once per session: discover (modern) or initialize (handshake)."""
        if self.modern:
            reply = await conn.send(self.rpc("server/discover"))
            check_rpc(reply)
            return
        reply = await conn.send(
            self.rpc(
                "initialize",
                {
                    "protocolVersion": HANDSHAKE_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "taskgate-bench", "version": "0.1.0"},
                },
            )
        )
        result = check_rpc(reply)
        self.version = result["protocolVersion"]
        session = reply.headers.get(b"mcp-session-id")
        self.session_id = session.decode() if session else None
        ack = await conn.send(self.rpc("notifications/initialized", rid=None))
        if ack.status >= 300:
            raise BenchError(f"notifications/initialized answered {ack.status}")


class BenchError(RuntimeError):
    pass


def check_rpc(reply: Reply) -> dict[str, Any]:
    """The JSON-RPC result of a reply, or BenchError. For set-up and sampled checks only."""
    if reply.status != 200:
        raise BenchError(f"HTTP {reply.status}: {reply.body[:300]!r}")
    message = reply.json()
    if "result" not in message:
        raise BenchError(f"JSON-RPC error: {message.get('error')}")
    result: dict[str, Any] = message["result"]
    if result.get("isError"):
        raise BenchError(f"tool error: {json.dumps(result)[:300]}")
    return result


def cheap_ok(reply: Reply, status: int = 200) -> bool:
    """Per-call check without parsing: right status, a result, and no tool error."""
    if reply.status != status:
        return False
    if status != 200:
        return True
    body = reply.body
    return b'"result"' in body and b'"isError":true' not in body
