"""Hostile connections, as a script on another machine would open them: many sockets from one
address, each sending the start of a request and then one byte now and then (slowloris, slow
body), or nothing at all. Each socket's fate is read back as a count: refused (a 503 or a
closed socket), or still held open by the server."""

from __future__ import annotations

import errno
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# The start of a POST whose head never ends: the server waits for the rest of the headers.
PARTIAL_HEAD = b"POST /api/v1/users HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "
# A complete head whose body never comes: the server's app waits for the body.
PARTIAL_BODY = (
    b"POST /api/v1/users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n{"
)
CONNECT_SECONDS = 5.0


@dataclass
class SlowFlood:
    """`count` sockets from `source` (any 127.x address on Linux) to the server at `port`."""

    port: int
    source: str = "127.0.0.2"
    opening: bytes = PARTIAL_HEAD
    sockets: list[socket.socket] = field(default_factory=list)
    fates: dict[int, str] = field(default_factory=dict)  # index: "503", "closed", "open"
    replies: dict[int, bytes] = field(default_factory=dict)

    def open(self, count: int) -> None:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.source, 0))
            sock.settimeout(CONNECT_SECONDS)
            index = len(self.sockets)
            self.sockets.append(sock)
            try:
                sock.connect(("127.0.0.1", self.port))
                sock.sendall(self.opening)
                self.fates[index] = "open"
            except OSError:
                self.fates[index] = "closed"
            sock.setblocking(False)

    def settle(
        self, until: Callable[[Counter[str]], bool], timeout: float = 60.0, trickle: bool = False
    ) -> Counter[str]:
        """Read every socket until `until(counts)` holds (or `timeout` passes); the counts.
        With `trickle`, each round first sends one more byte on every open socket."""
        deadline = time.monotonic() + timeout
        while True:
            if trickle:
                self.trickle()
            counts = self.read()
            if until(counts) or time.monotonic() > deadline:
                return counts
            time.sleep(0.05)

    def read(self) -> Counter[str]:
        for index, sock in enumerate(self.sockets):
            if self.fates.get(index) != "open":
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                self.replies[index] = self.replies.get(index, b"") + data
                continue
            status = self.replies.get(index, b"")[9:12].decode("latin-1")
            self.fates[index] = status or "closed"
        return Counter(self.fates.values())

    def trickle(self, byte: bytes = b"a") -> int:
        """One byte on each socket still open; how many were sent."""
        sent = 0
        for index, sock in enumerate(self.sockets):
            if self.fates.get(index) != "open":
                continue
            try:
                sent += sock.send(byte)
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                    raise
                self.fates[index] = "closed"
        return sent

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


def rss_bytes(pid: int) -> int:
    """The process's resident set size, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
