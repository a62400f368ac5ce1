"""Running `taskgate ...` as a person does: a process, with settings in its environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _clean_env() -> dict[str, str]:
    drop = ("ADMIN_TOKEN", "TASKGATE_ADMIN_URL", "MCP_", "CACHE_", "DATABASE_URL", "JWT_", "READ_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def taskgate(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskgate", *args],
        cwd=cwd,
        env={**_clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
