"""One `taskgate dev` per folder, and readers of `.taskgate/dev.env` that trust its URLs over
whatever the shell exports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from taskgate.cache_cmd import admin_target
from taskgate.devenv import DevFolderLock, StackRunning, dev_dir, write_dev_env
from tests.support.ports import free_port

DEV_TOKEN = "dev-admin-token-" + "x" * 32


def _clean_env() -> dict[str, str]:
    drop = ("ADMIN_TOKEN", "TASKGATE_ADMIN_URL", "MCP_", "CACHE_", "DATABASE_URL", "JWT_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@contextmanager
def _holder(folder: Path, url: str) -> Iterator[subprocess.Popen[str]]:
    """Another process that holds the folder's lock, as a running `taskgate dev` does."""
    code = (
        "import sys; from pathlib import Path; from taskgate.devenv import DevFolderLock; "
        f"DevFolderLock(Path({str(folder)!r})).acquire({url!r}); print('held', flush=True); "
        "sys.stdin.read()"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "held"
        yield process
    finally:
        process.kill()
        process.wait(10)


def test_a_second_dev_in_the_folder_refuses_in_one_line_and_leaves_the_first_s_file(
    tmp_path: Path,
) -> None:
    running = "http://127.0.0.1:18001/mcp"
    settings = dev_dir(tmp_path) / "dev.env"
    write_dev_env(settings, {"MCP_URL": running, "ADMIN_TOKEN": DEV_TOKEN})
    before = settings.read_bytes()
    with _holder(dev_dir(tmp_path), running):
        refused = subprocess.run(
            [sys.executable, "-m", "taskgate", "dev", "--mcp-port", str(free_port()),
             "--backend-port", str(free_port())],
            cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert refused.returncode == 2
        assert refused.stdout == ""
        assert refused.stderr.splitlines() == [
            f"taskgate dev: a stack already runs from this folder ({running}); stop it first, "
            "or start in another folder"
        ]
        assert settings.read_bytes() == before


def test_a_second_dev_interrupted_at_once_leaves_the_first_s_file(tmp_path: Path) -> None:
    running = "http://127.0.0.1:18002/mcp"
    settings = dev_dir(tmp_path) / "dev.env"
    write_dev_env(settings, {"MCP_URL": running, "ADMIN_TOKEN": DEV_TOKEN})
    before = settings.read_bytes()
    with _holder(dev_dir(tmp_path), running):
        second = subprocess.Popen(
            [sys.executable, "-m", "taskgate", "dev", "--mcp-port", str(free_port()),
             "--backend-port", str(free_port())],
            cwd=tmp_path, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        second.send_signal(signal.SIGINT)  # whenever it lands: at import, or at the refusal
        second.communicate(timeout=60)
        assert second.returncode != 0
        assert settings.read_bytes() == before


def test_the_lock_is_free_again_once_its_holder_is_killed(tmp_path: Path) -> None:
    with _holder(dev_dir(tmp_path), "http://127.0.0.1:18003/mcp") as holder:
        with pytest.raises(StackRunning, match=r"\(http://127\.0\.0\.1:18003/mcp\)"):
            DevFolderLock(dev_dir(tmp_path)).acquire("http://127.0.0.1:18004/mcp")
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    lock = DevFolderLock(dev_dir(tmp_path))
    lock.acquire("http://127.0.0.1:18004/mcp")
    try:
        assert lock.held
        assert (dev_dir(tmp_path) / "dev.lock").read_text() == "http://127.0.0.1:18004/mcp"
    finally:
        lock.release()


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]]

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        body = json.dumps({"ttl": 5}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _admin_api() -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    seen: list[tuple[str, str | None]] = []
    handler: type[_Recorder] = type("Handler", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_cache_show_after_sourcing_dev_env_reaches_dev_s_gateway_not_mcp_host_port(
    tmp_path: Path,
) -> None:
    with _admin_api() as (dev_gateway, dev_seen), _admin_api() as (other_gateway, other_seen):
        values = {
            "MCP_URL": f"{dev_gateway}/mcp",
            "TASKGATE_ADMIN_URL": dev_gateway,
            "ADMIN_TOKEN": DEV_TOKEN,
        }
        write_dev_env(dev_dir(tmp_path) / "dev.env", values)
        other_port = other_gateway.rsplit(":", 1)[1]
        # `set -a; . .taskgate/dev.env` in a shell that already pointed MCP_HOST:MCP_PORT (and
        # TASKGATE_ADMIN_URL, later overwritten by dev.env) at somebody else's gateway.
        env = {**_clean_env(), "MCP_HOST": "127.0.0.1", "MCP_PORT": other_port, **values}
        shown = subprocess.run(
            [sys.executable, "-m", "taskgate", "cache", "show"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert dev_seen == [("/admin/cache", f"Bearer {DEV_TOKEN}")]
    assert other_seen == []


def test_dev_env_s_url_goes_with_dev_env_s_token_whatever_the_shell_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_dev_env(
        dev_dir(tmp_path) / "dev.env",
        {
            "MCP_URL": "http://127.0.0.1:18801/mcp",
            "TASKGATE_ADMIN_URL": "http://127.0.0.1:18801",
            "ADMIN_TOKEN": DEV_TOKEN,
        },
    )
    monkeypatch.setenv("ADMIN_TOKEN", DEV_TOKEN)
    monkeypatch.setenv("MCP_PORT", "9001")
    monkeypatch.setenv("TASKGATE_ADMIN_URL", "http://somebody-else:8001")
    target = admin_target(None)
    assert target is not None
    assert (target.url, target.token) == ("http://127.0.0.1:18801", DEV_TOKEN)
