"""`taskgate dev` as a new user and an operator run it: one process, started in an empty folder,
whose printed lines and `.taskgate/dev.env` are all that the clients and the admin CLI need.

One dev (two replicas, two gateways: the scale-out topology) serves the whole module, because
each costs a PostgreSQL primary and its replicas.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt
import pytest
from mcp import Client, StdioServerParameters

from taskgate.devenv import mcp_urls, read_dev_env
from tests.support.dashboard import dashboard_panels, exposed_series, selectors_of
from tests.support.mcp_client import mcp_session
from tests.support.ports import free_port
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 240.0  # a primary and two replicas on a busy 2-core machine
SETTINGS_KEYS = {
    "MCP_URL",
    "MCP_URL_2",
    "TASKGATE_ADMIN_URL",
    "MCP_TOKEN",
    "MCP_TOKEN_EXPIRES_AT",
    "DEMO_EMAIL",
    "DEMO_PASSWORD",
    "FASTAPI_BASE_URL",
    "DATABASE_URL",
    "READ_DATABASE_URL",
    "READ_DATABASE_URLS",
    "JWT_SECRET",
    "ADMIN_TOKEN",
    "CACHE_URL",
    "PRIMARY_SUPERUSER_URL",
    "REPLICA_SUPERUSER_URLS",
}


def _clean_env() -> dict[str, str]:
    """Our environment without taskgate settings, as a new user's shell would be."""
    drop = ("ADMIN_TOKEN", "TASKGATE_ADMIN_URL", "MCP_", "CACHE_", "DATABASE_URL", "JWT_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def _consecutive_free_ports(count: int) -> int:
    for _ in range(200):
        first = free_port()
        if first + count <= 65535 and all(_free(first + i) for i in range(1, count)):
            return first
    raise RuntimeError("no run of free ports found")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _ports_of(values: dict[str, str]) -> set[int]:
    """Every port dev listens on: gateways, backend, Redis, primary and replicas."""
    urls = [
        *mcp_urls(values),
        values["FASTAPI_BASE_URL"],
        values["CACHE_URL"],
        values["PRIMARY_SUPERUSER_URL"],
        *values["REPLICA_SUPERUSER_URLS"].split(","),
    ]
    return {int(port) for url in urls for port in re.findall(r"127\.0\.0\.1:(\d+)", url)}


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Dev:
    cwd: Path
    process: subprocess.Popen[str]
    mcp_port: int
    backend_port: int
    stdout: list[str] = field(default_factory=list)

    @property
    def settings_file(self) -> Path:
        return self.cwd / ".taskgate" / "dev.env"

    def settings(self) -> dict[str, str]:
        return read_dev_env(self.settings_file)

    def taskgate(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`taskgate ...` in dev's folder, with no taskgate settings in the environment."""
        return subprocess.run(
            [sys.executable, "-m", "taskgate", *args],
            cwd=self.cwd,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _read_lines(process: subprocess.Popen[str], into: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        into.append(line.rstrip("\n"))


@pytest.fixture(scope="module")
def dev() -> Iterator[Dev]:
    cwd = Path(tempfile.mkdtemp(prefix="taskgate-test-dev-"))
    mcp_port, backend_port = _consecutive_free_ports(2), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "taskgate", "dev", "--replicas", "2", "--gateways", "2",
         "--mcp-port", str(mcp_port), "--backend-port", str(backend_port)],
        cwd=cwd,
        env=_clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=open(cwd / "dev-stderr.txt", "w"),  # noqa: SIM115 (the child owns it)
        text=True,
        start_new_session=True,  # its own process group: what is left of it can be found
    )  # fmt: skip
    running = Dev(cwd, process, mcp_port, backend_port)
    threading.Thread(target=_read_lines, args=(process, running.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while "Press Ctrl-C to stop." not in running.stdout:
            if process.poll() is not None or time.monotonic() > deadline:
                stderr = (cwd / "dev-stderr.txt").read_text()
                pytest.fail(f"taskgate dev did not get ready: {running.stdout}\n{stderr}")
            time.sleep(0.2)
        ports = _ports_of(running.settings())
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C
            process.wait(60)
    assert process.returncode == 0, (cwd / "dev-stderr.txt").read_text()
    wait_until(lambda: not _alive(process.pid), "every process of taskgate dev gone after Ctrl-C")
    assert not running.settings_file.exists(), "the stack that wrote dev.env must remove it"
    # PostgreSQL daemonizes out of the process group: its ports tell whether it stopped.
    listening = [port for port in ports if _listening(port)]
    assert not listening, f"still listening after Ctrl-C: {listening}"


def test_dev_prints_one_endpoint_per_gateway_in_port_order_then_the_token_and_file(
    dev: Dev,
) -> None:
    lines = dev.stdout
    endpoints = [line.removeprefix("MCP endpoint: ") for line in lines if "MCP endpoint: " in line]
    assert endpoints == [
        f"http://127.0.0.1:{dev.mcp_port}/mcp",
        f"http://127.0.0.1:{dev.mcp_port + 1}/mcp",
    ]
    token = next(line for line in lines if line.startswith("Bearer token: "))
    assert f"Settings file: {dev.settings_file}" in lines
    assert any(line.startswith("Admin CLI: ") for line in lines)
    values = dev.settings()
    assert token.removeprefix("Bearer token: ") == values["MCP_TOKEN"]
    # The banner says how long the token lives, and whose login the OAuth page takes.
    claims = jwt.decode(values["MCP_TOKEN"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 24 * 3600
    assert claims["aud"] == values["MCP_URL"]
    assert (
        f"Token lifetime: 24h, until {values['MCP_TOKEN_EXPIRES_AT']} (MCP_TOKEN_EXPIRES_AT); "
        "then restart dev, or use OAuth, which refreshes"
    ) in lines
    assert (
        f"Demo login: {values['DEMO_EMAIL']} with DEMO_PASSWORD from the settings file "
        "(OAuth login page)"
    ) in lines
    # Component logs go to files, so nothing but the banner reaches stdout.
    assert not [line for line in lines if re.match(r"\d{4}-\d\d-\d\d ", line)]
    logs = [Path(line.removeprefix("Log: ")) for line in lines if line.startswith("Log: ")]
    assert {path.name for path in logs} >= {
        "backend.log",
        f"gateway-{dev.mcp_port}.log",
        f"gateway-{dev.mcp_port + 1}.log",
    }
    assert all(path.is_file() and path.parent.parent == dev.cwd / ".taskgate" for path in logs)


def test_the_settings_file_is_private_and_holds_every_value_a_client_needs(dev: Dev) -> None:
    assert stat.S_IMODE(dev.settings_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(dev.settings_file.parent.stat().st_mode) == 0o700
    values = dev.settings()
    assert set(values) >= SETTINGS_KEYS
    assert mcp_urls(values) == [
        f"http://127.0.0.1:{dev.mcp_port}/mcp",
        f"http://127.0.0.1:{dev.mcp_port + 1}/mcp",
    ]
    assert values["FASTAPI_BASE_URL"] == f"http://127.0.0.1:{dev.backend_port}"
    assert len(values["READ_DATABASE_URLS"].split(",")) == 2
    assert len(values["REPLICA_SUPERUSER_URLS"].split(",")) == 2
    assert values["CACHE_URL"].startswith("redis://127.0.0.1:")
    # The demo password is the real one: it logs in.
    reply = httpx.post(
        f"{values['FASTAPI_BASE_URL']}/api/v1/auth/token",
        data={"username": values["DEMO_EMAIL"], "password": values["DEMO_PASSWORD"]},
        timeout=10,
    )
    assert reply.status_code == 200


def test_the_admin_cli_works_from_the_settings_file_with_options_after_the_action(
    dev: Dev,
) -> None:
    shown = dev.taskgate("cache", "show")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["shared"] is True  # the gateways share dev's Redis

    changed = dev.taskgate("cache", "set-ttl", "9", "--tool", "list_tasks", "--actor", "e2e")
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["effective_ttl"]["list_tasks"] == 9

    # The second gateway, named after the action, picks the change up through Redis.
    second = f"http://127.0.0.1:{dev.mcp_port + 1}"

    def shows_the_change() -> bool:
        other = dev.taskgate("cache", "show", "--url", second)
        assert other.returncode == 0, other.stderr
        return bool(json.loads(other.stdout)["effective_ttl"]["list_tasks"] == 9)

    wait_until(shows_the_change, "the second gateway's TTL")

    flushed = dev.taskgate("cache", "flush", "--actor", "e2e")
    assert flushed.returncode == 0, flushed.stderr
    assert json.loads(flushed.stdout) == {"flushed": True}


def test_cache_show_after_sourcing_the_settings_file_reaches_dev_s_gateway(dev: Dev) -> None:
    # `set -a; . .taskgate/dev.env` in a shell whose MCP_PORT names another port.
    values = dev.settings()
    env = {**_clean_env(), **values, "MCP_HOST": "127.0.0.1", "MCP_PORT": str(free_port())}
    shown = subprocess.run(
        [sys.executable, "-m", "taskgate", "cache", "show"],
        cwd=dev.cwd, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["shared"] is True


def test_the_admin_log_names_the_socket_address_not_a_forwarded_one(dev: Dev) -> None:
    values = dev.settings()
    gateway = values["MCP_URL"].removesuffix("/mcp")
    reply = httpx.post(
        f"{gateway}/admin/cache/flush",
        headers={
            "Authorization": f"Bearer {values['ADMIN_TOKEN']}",
            "X-Admin-Actor": "mallory",
            "X-Forwarded-For": "10.9.8.7",
        },
        timeout=10,
    )
    assert reply.status_code == 200
    log = dev.cwd / ".taskgate" / "logs" / f"gateway-{dev.mcp_port}.log"
    wait_until(lambda: "cache flushed by mallory@" in log.read_text(), "the flush in the log")
    assert "cache flushed by mallory@127.0.0.1" in log.read_text()
    assert "10.9.8.7" not in log.read_text()


async def test_a_stdio_client_configured_from_the_settings_file_shares_dev_s_data(
    dev: Dev,
) -> None:
    values = dev.settings()
    stdio = StdioServerParameters(
        command=sys.executable,
        args=["-m", "taskgate", "gateway", "--transport", "stdio"],
        env={
            **_clean_env(),
            **values,
            "GATEWAY_EMAIL": values["DEMO_EMAIL"],
            "GATEWAY_PASSWORD": values["DEMO_PASSWORD"],
            "LOG_LEVEL": "WARNING",
        },
        cwd=dev.cwd,
    )
    async with Client(stdio) as client:
        created = await client.call_tool("create_task", {"title": "written over stdio"})
    assert not created.is_error, created.content
    assert created.structured_content is not None
    # The demo user's bearer token, on the second gateway, reads the write.
    async with mcp_session(values["MCP_URL_2"], values["MCP_TOKEN"]) as client:
        task = await client.call_tool("get_task", {"task_id": created.structured_content["id"]})
    assert not task.is_error, task.content
    assert task.structured_content is not None
    assert task.structured_content["title"] == "written over stdio"


async def test_every_dashboard_panel_selects_series_that_a_live_stack_exports(dev: Dev) -> None:
    values = dev.settings()
    async with mcp_session(values["MCP_URL"], values["MCP_TOKEN"]) as client:
        await client.call_tool("list_tasks", {})
        await client.call_tool("list_tasks", {})  # a hit
        await client.call_tool("get_task", {"task_id": 10**9})  # an error outcome
    async with httpx.AsyncClient(timeout=10) as http:
        gateway = await http.get(values["MCP_URL"].removesuffix("/mcp") + "/metrics")
        backend = await http.get(values["FASTAPI_BASE_URL"] + "/metrics")
    assert gateway.status_code == backend.status_code == 200
    series = exposed_series(gateway.text) + exposed_series(backend.text)

    panels = dashboard_panels()
    assert len(panels) >= 14
    for panel in panels:
        for target in panel["targets"]:  # type: ignore[attr-defined]
            selectors = selectors_of(target["expr"])
            assert selectors, f"{panel['title']}: no metric in {target['expr']!r}"
            for selector in selectors:
                assert any(selector.matches(one) for one in series), (
                    f"{panel['title']}: {selector} selects no series the stack exports"
                )


def _refused_dev(cwd: Path, *args: str) -> tuple[subprocess.Popen[str], str, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "taskgate", "dev", *args],
        cwd=cwd,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: anything left of it would show
    )
    out, err = process.communicate(timeout=60)
    return process, out, err


def test_a_second_dev_on_the_same_ports_says_so_in_one_line_and_leaves_nothing(
    dev: Dev, tmp_path: Path
) -> None:
    started = time.monotonic()
    busy = str(dev.mcp_port + 1)
    process, out, err = _refused_dev(
        tmp_path, "--mcp-port", busy, "--backend-port", str(free_port())
    )
    assert process.returncode == 2
    assert out == ""
    assert err.splitlines() == [
        f"taskgate dev: port {busy} (for a gateway) is in use on 127.0.0.1; "
        "choose another with --mcp-port"
    ]
    assert time.monotonic() - started < 30
    assert not _alive(process.pid), "a process of the refused dev is still running"
    assert not (tmp_path / ".taskgate").exists()
    # The first dev is untouched.
    assert httpx.get(f"http://127.0.0.1:{busy}/healthz", timeout=5).status_code == 200


def test_a_busy_backend_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process, out, err = _refused_dev(
            tmp_path, "--backend-port", str(port), "--mcp-port", str(free_port())
        )
    assert process.returncode == 2
    assert out == ""
    assert err.splitlines() == [
        f"taskgate dev: port {port} (for the backend) is in use on 127.0.0.1; "
        "choose another with --backend-port"
    ]
    assert not _alive(process.pid), "a process of the refused dev is still running"
    assert not (tmp_path / ".taskgate").exists()


def test_a_second_dev_in_the_same_folder_names_the_first_and_leaves_its_file(dev: Dev) -> None:
    before = dev.settings_file.read_bytes()
    process, out, err = _refused_dev(
        dev.cwd, "--mcp-port", str(free_port()), "--backend-port", str(free_port())
    )
    assert process.returncode == 2
    assert out == ""
    assert err.splitlines() == [
        f"taskgate dev: a stack already runs from this folder (http://127.0.0.1:{dev.mcp_port}"
        "/mcp); stop it first, or start in another folder"
    ]
    assert dev.settings_file.read_bytes() == before
    assert not _alive(process.pid), "a process of the refused dev is still running"
