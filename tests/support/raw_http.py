"""Raw HTTP/1.1 requests, byte for byte as written: duplicated headers, padded values, a wrong
Host, which an HTTP client library would normalise or refuse. One connection per request."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

REPLY_SECONDS = 10.0


@dataclass(frozen=True)
class RawReply:
    status: int
    headers: list[tuple[str, str]]  # names lower-cased, in order
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def json(self) -> Any:
        return json.loads(self.body)


async def send_raw(
    url: str,
    method: str,
    headers: list[tuple[str, str]],
    body: bytes = b"",
    path: str | None = None,
    host: str | None = None,
) -> RawReply:
    """Send one request to `url`'s server. `host` replaces the Host header (None: the URL's).
    A reply that does not end within REPLY_SECONDS (an event stream) fails the test."""
    async with asyncio.timeout(REPLY_SECONDS):
        return await _exchange(url, method, headers, body, path, host)


def _head(head: bytes) -> tuple[int, list[tuple[str, str]]]:
    """The status and the (lower-cased) headers of a reply's head, up to its blank line."""
    status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
    headers = []
    for line in header_lines:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    return int(status_line.split()[1]), headers


def _length(headers: list[tuple[str, str]]) -> int | None:
    return next((int(v) for k, v in headers if k == "content-length"), None)


async def _exchange(
    url: str,
    method: str,
    headers: list[tuple[str, str]],
    body: bytes,
    path: str | None,
    host: str | None,
) -> RawReply:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    lines = [
        f"{method} {path or parts.path} HTTP/1.1",
        f"Host: {parts.netloc if host is None else host}",
    ]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        status, reply_headers = _head(await reader.readuntil(b"\r\n\r\n"))
        length = _length(reply_headers)
        if method == "HEAD":  # the headers of a GET, with no body
            data = b""
        elif length is not None:
            data = await reader.readexactly(length)
        else:
            data = await reader.read()
        return RawReply(status, reply_headers, data)
    finally:
        writer.close()
        await writer.wait_closed()


async def send_bytes(url: str, data: bytes, replies: int = 1) -> list[RawReply]:
    """Write `data` as is (pipelined requests, chunked bodies, a wrong Content-Length) on one
    connection, and read `replies` replies, or as many as come before the server closes."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    async with asyncio.timeout(REPLY_SECONDS):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            writer.write(data)
            await writer.drain()
            got = []
            for _ in range(replies):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                status, reply_headers = _head(head)
                length = _length(reply_headers)
                body = await reader.readexactly(length) if length is not None else b""
                got.append(RawReply(status, reply_headers, body))
            return got
        finally:
            writer.close()
            await writer.wait_closed()
