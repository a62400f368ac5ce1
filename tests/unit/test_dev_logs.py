"""A dev component's log is bounded: a child that floods its output fills at most two files of
DEV_LOG_MAX_BYTES, and a restart keeps the last run's log as `.1`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from taskgate.dev_logs import copy_to_rotating_log

FLOOD = (
    "import sys\n"
    "for _ in range(40_000): sys.stdout.write('OSError: Too many open files ' * 4 + '\\n')"
)


def _flood_into(path: Path, max_bytes: int) -> None:
    child = subprocess.Popen([sys.executable, "-c", FLOOD], stdout=subprocess.PIPE)
    assert child.stdout is not None
    copy_to_rotating_log(child.stdout, path, max_bytes)
    child.wait(60)
    deadline = time.monotonic() + 30
    while not child.stdout.closed and time.monotonic() < deadline:  # the copier closes it
        time.sleep(0.01)


def test_a_flooding_child_fills_at_most_two_capped_files(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    _flood_into(log, 256 * 1024)  # the child writes about 4.8 MB
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["gateway.log", "gateway.log.1"]
    assert all(f.stat().st_size <= 256 * 1024 for f in files)


def test_a_restart_keeps_the_last_runs_log_as_dot_one(tmp_path: Path) -> None:
    log = tmp_path / "backend.log"
    log.write_bytes(b"the last run\n")
    _flood_into(log, 10 * 2**20)
    assert (tmp_path / "backend.log.1").read_bytes() == b"the last run\n"
    assert log.read_bytes().startswith(b"OSError")
