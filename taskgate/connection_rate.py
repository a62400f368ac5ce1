"""How fast each client address may open connections: a bounded table of per-address rates.

The connection caps of taskgate/serving.py bound how many connections are held, not how fast
they come: a client that opens a new socket for every one the server closes costs the server
an accept, a transport, a parser and a close each time, as fast as it can connect. This table
says, at accept(), whether an address is within its rate, so that one over it is refused before
any of that work.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable

# Addresses tracked at once, about 200 bytes each. Past it the least recently seen one is
# forgotten (it starts again with a full burst): an attacker with more addresses than this is
# beyond what a per-address limit can stop anyway.
RATE_TABLE_ENTRIES = 16_384


def client_key(host: str) -> str:
    """The address a rate is counted for: the host itself, an IPv6 one by its /64 (what one
    machine gets), an IPv4-mapped IPv6 one as the IPv4 address it is."""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return address.packed[:8].hex()


class NewConnectionRate:
    """Per-address new-connection rate with a burst (GCRA: one float per address, the time its
    allowance is next whole again). An address whose allowance is whole again is dropped."""

    def __init__(
        self,
        per_second: float,
        burst: int,
        entries: int = RATE_TABLE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = 1.0 / per_second
        # burst - 1 intervals ahead is allowed, burst is not; half an interval of slack between
        # them, for float sums.
        self._tolerance = (burst - 0.5) * self._interval
        self._entries = entries
        self._clock = clock
        self._full_at: OrderedDict[str, float] = OrderedDict()

    def admits(self, key: str) -> bool:
        """Count a new connection from `key`; False (and not counted) when it is over the rate."""
        now = self._clock()
        full_at = max(self._full_at.get(key, now), now)
        if full_at - now > self._tolerance:
            return False
        if key in self._full_at:
            self._full_at.move_to_end(key)
        elif len(self._full_at) >= self._entries:
            self.forget_idle()
            if len(self._full_at) >= self._entries:
                self._full_at.popitem(last=False)
        self._full_at[key] = full_at + self._interval
        return True

    def forget_idle(self) -> None:
        """Drop every address whose allowance is whole again (as if never seen), and give the
        table's memory back when that empties it."""
        now = self._clock()
        idle = [key for key, full_at in self._full_at.items() if full_at <= now]
        for key in idle:
            del self._full_at[key]
        if not self._full_at:
            self._full_at = OrderedDict()  # a dict keeps its largest size until replaced

    def __len__(self) -> int:
        return len(self._full_at)
