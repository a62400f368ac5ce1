"""A request body read in ASGI, bounded, and its Content-Length read one way: for the
gateway's fast path and admin API and the backend's body size limit; and a JSON reply sent
straight from an ASGI middleware."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from starlette.types import Message, Receive, Send


def content_length(value: bytes | str | None) -> int | None:
    """A Content-Length value as a number, or None: absent, or not ASCII digits alone.

    str.isdigit() also takes '²' (a Latin-1 header byte) and other digits that int() refuses or
    reads otherwise; a sign, a space or a second value is no length either."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if not (text and text.isascii() and text.isdigit()):
        return None
    return int(text)


async def send_json(
    send: Send, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """A whole JSON response from a middleware that answers before (or instead of) the app."""
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*head, *headers]})
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class ReadBody:
    received: list[Message]  # every message read, to replay to the app
    body: bytes | None  # the whole body; None when over the limit or the client left
    too_large: bool


async def read_body(receive: Receive, limit: int) -> ReadBody:
    """Read the body up to `limit` bytes; stop at the first byte over it."""
    received: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return ReadBody(received, None, too_large=False)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return ReadBody(received, None, too_large=True)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return ReadBody(received, b"".join(chunks), too_large=False)


def replaying(received: list[Message], receive: Receive) -> Receive:
    """A receive that gives the app the messages already read, then the client's own."""
    pending = deque(received)

    async def replay() -> Message:
        if pending:
            return pending.popleft()
        return await receive()

    return replay
