"""`taskgate dev --app notes_spec:SPEC`, run in a copy of the notes example's folder as its
author would: the app's schema created, the app and a gateway started, the same banner and
settings file, an agent calling its tools with the printed token, and Ctrl-C stopping it all."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

from taskgate.dev import APP_USER_LINE
from taskgate.devenv import read_dev_env
from taskgate.pgpair import free_port
from tests.support.mcp_client import mcp_session
from tests.support.mcp_results import ok
from tests.support.notes_app import NOTES_DIR

READY_TIMEOUT = 240.0


def _clean_env() -> dict[str, str]:
    drop = ("ADMIN_TOKEN", "MCP_", "CACHE_", "DATABASE_URL", "JWT_", "TASKGATE_", "NOTES_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def _read_lines(process: subprocess.Popen[str], into: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        into.append(line.rstrip("\n"))


@dataclass
class DevApp:
    cwd: Path
    lines: list[str]
    mcp_port: int
    backend_port: int


@pytest.fixture
def dev_app() -> Iterator[DevApp]:
    cwd = Path(tempfile.mkdtemp(prefix="taskgate-test-dev-app-"))
    shutil.copytree(NOTES_DIR, cwd, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
    mcp_port, backend_port = free_port(), free_port()
    lines: list[str] = []
    # -P: as the `taskgate` command runs, without the app's folder (and its `shared`) first.
    process = subprocess.Popen(
        [sys.executable, "-P", "-m", "taskgate", "dev", "--app", "notes_spec:SPEC",
         "--mcp-port", str(mcp_port), "--backend-port", str(backend_port)],
        cwd=cwd,
        env=_clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=open(cwd / "dev-stderr.txt", "w"),  # noqa: SIM115 (the child owns it)
        text=True,
        start_new_session=True,
    )  # fmt: skip
    threading.Thread(target=_read_lines, args=(process, lines), daemon=True).start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while "Press Ctrl-C to stop." not in lines:
            if process.poll() is not None or time.monotonic() > deadline:
                stderr = (cwd / "dev-stderr.txt").read_text()
                pytest.fail(f"taskgate dev --app did not get ready: {lines}\n{stderr}")
            time.sleep(0.2)
        yield DevApp(cwd, lines, mcp_port, backend_port)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C
            process.wait(60)
        shutil.rmtree(cwd, ignore_errors=True)
    assert process.returncode == 0


async def test_dev_serves_a_users_own_app_from_its_folder(dev_app: DevApp) -> None:
    url = f"http://127.0.0.1:{dev_app.mcp_port}/mcp"
    assert f"MCP endpoint: {url}" in dev_app.lines
    token = next(line for line in dev_app.lines if line.startswith("Bearer token: "))[14:]
    settings = read_dev_env(dev_app.cwd / ".taskgate" / "dev.env")
    assert settings["MCP_URL"] == url and settings["MCP_TOKEN"] == token
    # The app's own tokens: no OAuth to refresh them, and no demo account, but user 1.
    lifetime = next(line for line in dev_app.lines if line.startswith("Token lifetime: "))
    assert lifetime.endswith("(MCP_TOKEN_EXPIRES_AT); then restart dev")
    assert APP_USER_LINE in dev_app.lines and not any("Demo login" in x for x in dev_app.lines)
    assert settings["FASTAPI_BASE_URL"] == f"http://127.0.0.1:{dev_app.backend_port}"
    # The secret dev made up for the spec is written down: the printed token is signed with it.
    claims = jwt.decode(token, settings["NOTES_SECRET"], algorithms=["HS256"])
    assert claims["uid"] == 1
    async with mcp_session(url, token) as client:
        note = ok(await client.call_tool("create_note", {"title": "from dev"}))
        page = ok(await client.call_tool("list_notes", {}))
        assert [n["id"] for n in page["notes"]] == [note["id"]]
