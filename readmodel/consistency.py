"""Read-your-writes: LSNs, and waiting until the replica has replayed a write."""

from __future__ import annotations

import asyncio
import re
import time

from sqlalchemy.ext.asyncio import AsyncConnection

from readmodel.queries import replayed_lsn

_LSN = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")


def parse_lsn(lsn: str) -> int:
    """'16/B374D848' -> a byte position. Raises ValueError on anything else."""
    if not _LSN.fullmatch(lsn):
        raise ValueError(f"not an LSN: {lsn!r}")
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


class ReplayWatcher:
    """Knows how far the replica has replayed, asking it only when a read needs a newer position."""

    def __init__(self, poll_interval: float = 0.005, max_poll_interval: float = 0.05) -> None:
        self.known = 0
        self._poll = poll_interval
        self._max_poll = max_poll_interval

    async def wait_for(self, conn: AsyncConnection, target: int, bound: float) -> int:
        """Wait up to `bound` seconds for conn to replay target. Returns the lag left (0 = done)."""
        if target <= self.known:
            return 0
        deadline = time.monotonic() + bound
        interval = self._poll
        while True:
            position = await replayed_lsn(conn)
            # Each poll runs in its own snapshot; end it so the next sees fresh data.
            await conn.rollback()
            if position is not None:
                self.known = max(self.known, parse_lsn(position))
            if target <= self.known:
                return 0
            if time.monotonic() >= deadline:
                return target - self.known
            await asyncio.sleep(interval)
            interval = min(interval * 2, self._max_poll)


def format_lsn(position: int) -> str:
    """A byte position -> '16/B374D848', PostgreSQL's own spelling."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"
