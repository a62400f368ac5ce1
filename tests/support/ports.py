"""Loopback ports for the servers that tests start, chosen outside the kernel's ephemeral range.

A port found by binding port 0 comes from the ephemeral range, which every outgoing connection on
the machine draws from too, and so does every other test session's pick: between the choice and
the server's own bind, another process can take it (on a busy machine, it did). Below the range,
only a server that names its port takes one, and each pick here is random and checked free.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

_LOWEST = 20_000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_ATTEMPTS = 200


def _first_ephemeral() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def free_port() -> int:
    """A loopback port that nothing listens on now, below the ephemeral range."""
    highest = max(_first_ephemeral(), _LOWEST + 1_000)
    for _ in range(_ATTEMPTS):
        # secrets, not random: pytest-randomly reseeds random for every test.
        port = _LOWEST + secrets.randbelow(highest - _LOWEST)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free loopback port in {_LOWEST}-{highest} after {_ATTEMPTS} tries")
