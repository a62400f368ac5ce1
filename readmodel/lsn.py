"""WAL positions (LSNs): PostgreSQL's text form, and byte positions that compare."""

from __future__ import annotations

import re

_LSN = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")


def parse_lsn(lsn: str) -> int:
    """'16/B374D848' -> a byte position. Raises ValueError on anything else."""
    if not _LSN.fullmatch(lsn):
        raise ValueError(f"not an LSN: {lsn!r}")
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(position: int) -> str:
    """A byte position -> '16/B374D848', PostgreSQL's own spelling."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"
