"""Connection floods from raw sockets, in a process of their own so that their work never delays
the measured client: sockets that never finish a request, each one's fate read back (an answer,
a 503, or a socket closed without a word), and the flood that opens a new one for every socket
the server ends (tests/bench/attacks.py, tests/security/test_connection_floods.py).
"""

from __future__ import annotations

import errno
import resource
import selectors
import socket
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

CONNECT_SECONDS = 2.0


def partial_head(path: str) -> bytes:
    """The start of a POST whose head never ends (slowloris)."""
    return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ".encode()


def partial_body(path: str) -> bytes:
    """A whole head announcing a body of which one byte comes (slow body)."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n{"
    ).encode()


def raise_descriptor_limit() -> int:
    """The soft open-file limit raised to the hard one; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class _Held:
    sock: socket.socket
    reply: bytes = b""


class SocketPool:
    """Sockets to one server port, watched with epoll: each one's fate is counted when the
    server ends it, as the status of what it answered first ("503", "408", "405", ...) or
    "closed" when it closed without a word."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.selector = selectors.DefaultSelector()
        self.held: dict[int, _Held] = {}
        self.fates: Counter[str] = Counter()
        self.peak = 0

    def connect(self, source: str, payload: bytes) -> int | None:
        """A new socket from `source` that sent `payload`; its descriptor, None if it failed."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((source, 0))
            sock.settimeout(CONNECT_SECONDS)
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(payload)
        except OSError:
            sock.close()
            self.fates["connect failed"] += 1
            return None
        sock.setblocking(False)
        self.held[sock.fileno()] = _Held(sock)
        self.selector.register(sock, selectors.EVENT_READ)
        self.peak = max(self.peak, len(self.held))
        return sock.fileno()

    def poll(self, timeout: float) -> None:
        """Read what the server sent, and count every socket it ended."""
        for key, _ in self.selector.select(timeout):
            held = self.held[key.fd]
            try:
                data = held.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                held.reply = (held.reply + data)[:64]
                continue
            self._end(key.fd, held.reply[9:12].decode("latin-1") or "closed")

    def ended_unanswered(self) -> int:
        """Sockets that got no reply: the server closed them first, or they never connected."""
        return self.fates["closed"] + self.fates["connect failed"]

    def answered(self) -> Counter[str]:
        """The statuses of the replies so far, of open and ended sockets alike."""
        statuses = Counter(h.reply[9:12].decode("latin-1") for h in self.held.values() if h.reply)
        return statuses + Counter({k: v for k, v in self.fates.items() if k.isdigit()})

    def trickle(self, byte: bytes = b"a") -> None:
        """One more byte on every socket still open."""
        for fd, held in list(self.held.items()):
            try:
                held.sock.send(byte)
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                    raise
                self._end(fd, "closed")

    def _end(self, fd: int, fate: str) -> None:
        held = self.held.pop(fd)
        self.selector.unregister(held.sock)
        held.sock.close()
        self.fates[fate] += 1

    def close(self) -> None:
        for held in self.held.values():
            self.selector.unregister(held.sock)
            held.sock.close()
        self.held.clear()
        self.selector.close()


def connection_flood(
    port: int,
    sources: list[str],
    per_source: int,
    path: str,
    trickle_seconds: float,
    new_per_round: int,
    reopen: bool,
    stop: Any,
    live: Any,
    results: Any,
) -> None:
    """Open `per_source` sockets from each source address, half of them a stalled head and half
    a stalled body, one byte more on each every `trickle_seconds`; with `reopen`, a new one for
    every socket the server ends (at most `new_per_round` every 0.1 s), until `stop` is set.
    `live` (an Array) shows [open now, peak open, opened in all]; `results` gets the fates."""
    raise_descriptor_limit()
    pool = SocketPool(port)
    openings = (partial_head(path), partial_body(path))
    mine: dict[str, int] = dict.fromkeys(sources, 0)
    by_fd: dict[int, str] = {}
    opened = 0
    wanted = per_source * len(sources)
    last_trickle = time.monotonic()
    while not stop.is_set():
        budget = new_per_round
        for source in sources:
            while mine[source] < per_source and budget > 0 and (reopen or opened < wanted):
                budget -= 1
                fd = pool.connect(source, openings[opened % 2])
                if fd is not None:
                    by_fd[fd] = source
                    mine[source] += 1
                    opened += 1
        before = set(pool.held)
        pool.poll(0.1)
        if time.monotonic() - last_trickle >= trickle_seconds:
            pool.trickle()
            last_trickle = time.monotonic()
        for fd in before - set(pool.held):
            mine[by_fd.pop(fd)] -= 1
        live[0], live[1], live[2] = len(pool.held), pool.peak, opened
    results.put(dict(pool.fates) | {"still open at the end": len(pool.held), "opened": opened})
    pool.close()
