"""Each dev component's log, bounded: the child writes to a pipe, and a thread copies it into
`<name>.log`, which rotates to `<name>.log.1` at DEV_LOG_MAX_BYTES (the older copy goes).

A child that logs without pause (a flood of errors under attack) then costs at most twice
DEV_LOG_MAX_BYTES of disk, and a restart starts a fresh file, keeping the last run's as `.1`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import IO

DEV_LOG_MAX_BYTES = 10 * 2**20
_CHUNK = 64 * 1024


def rotate(path: Path) -> None:
    """`path` becomes `path.1` (replacing it); `path` is free for a new file."""
    if path.exists():
        path.replace(path.with_name(path.name + ".1"))


def copy_to_rotating_log(source: IO[bytes], path: Path, max_bytes: int = DEV_LOG_MAX_BYTES) -> None:
    """Copy `source` into `path` until it ends, rotating at `max_bytes`; in a daemon thread."""

    def copy() -> None:
        rotate(path)
        out = path.open("wb")
        written = 0
        try:
            while chunk := source.read1(_CHUNK):  # type: ignore[attr-defined]
                if written and written + len(chunk) > max_bytes:
                    out.close()
                    rotate(path)
                    out = path.open("wb")
                    written = 0
                out.write(chunk)
                out.flush()
                written += len(chunk)
        finally:
            out.close()
            source.close()

    threading.Thread(target=copy, name=f"log {path.name}", daemon=True).start()
