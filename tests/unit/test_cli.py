"""The command line's conventions: options after the action, --version, the admin CLI's
settings (environment first, then .taskgate/dev.env), dev.env itself, and dev's port checks."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from taskgate.cache_cmd import admin_target
from taskgate.cli import parser
from taskgate.dev import DevOptions, PortBusy, check_ports
from taskgate.devenv import mcp_urls, read_dev_env, write_dev_env
from tests.support.ports import free_port


@pytest.fixture
def no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty folder as the working directory, and no taskgate settings in the environment."""
    for name in ("ADMIN_TOKEN", "TASKGATE_ADMIN_URL", "MCP_HOST", "MCP_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "argv",
    [
        ["cache", "show", "--url", "http://10.0.0.5:8001"],
        ["cache", "--url", "http://10.0.0.5:8001", "show"],
        ["cache", "set-ttl", "3", "--url", "http://10.0.0.5:8001", "--tool", "get_task"],
    ],
)
def test_cache_options_are_accepted_before_and_after_the_action(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    assert args.url == "http://10.0.0.5:8001"


def test_an_actor_given_before_the_action_is_kept() -> None:
    args = parser().parse_args(["cache", "--actor", "alice", "flush"])
    assert args.actor == "alice"
    assert parser().parse_args(["cache", "flush", "--actor", "bob"]).actor == "bob"


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("taskgate ")


def test_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["cache", "--help"], ["dev", "--help"]):
        with pytest.raises(SystemExit):
            parser().parse_args(argv)
        assert "examples:" in capsys.readouterr().out


def test_dev_refuses_nonsense_counts_and_ports(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["dev", "--gateways", "0"],
        ["dev", "--replicas", "-1"],
        ["dev", "--mcp-port", "70000"],
    ):
        with pytest.raises(SystemExit) as exited:
            parser().parse_args(argv)
        assert exited.value.code == 2
    capsys.readouterr()


def test_the_admin_cli_reads_dev_env_when_no_token_is_set(no_settings: Path) -> None:
    assert admin_target(None) is None
    write_dev_env(
        no_settings / ".taskgate" / "dev.env",
        {"MCP_URL": "http://127.0.0.1:18801/mcp", "ADMIN_TOKEN": "from-dev-env"},
    )
    target = admin_target(None)
    assert target is not None
    assert (target.url, target.token) == ("http://127.0.0.1:18801", "from-dev-env")
    other = admin_target("http://other:8001")
    assert other is not None
    assert (other.url, other.token) == ("http://other:8001", "from-dev-env")


def test_an_admin_token_in_the_environment_wins_over_dev_env(
    no_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_dev_env(
        no_settings / ".taskgate" / "dev.env",
        {"MCP_URL": "http://127.0.0.1:18801/mcp", "ADMIN_TOKEN": "from-dev-env"},
    )
    monkeypatch.setenv("ADMIN_TOKEN", "from-the-environment")
    monkeypatch.setenv("MCP_PORT", "9001")
    target = admin_target(None)
    assert target is not None
    assert (target.url, target.token) == ("http://127.0.0.1:9001", "from-the-environment")


def test_dev_env_is_private_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / ".taskgate" / "dev.env"
    values = {"MCP_URL": "http://127.0.0.1:1/mcp", "MCP_URL_2": "http://127.0.0.1:2/mcp"}
    write_dev_env(path, {**values, "JWT_SECRET": "a-b_c"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    read = read_dev_env(path)
    assert read["JWT_SECRET"] == "a-b_c"
    assert mcp_urls(read) == list(values.values())


@pytest.mark.parametrize("value", ["two\nlines", "it's", "", "a b"])
def test_dev_env_refuses_values_a_shell_would_misread(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError):
        write_dev_env(tmp_path / "dev.env", {"KEY": value})


def _listening_after_a_free_port() -> socket.socket:
    """A listening socket on a port whose predecessor is free (another process may hold any)."""
    for _ in range(50):
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", taken.getsockname()[1] - 1))
            except OSError:
                taken.close()
                continue
        return taken
    raise AssertionError("no free port below a free port in 50 tries")


def test_a_busy_gateway_port_is_named_with_its_flag() -> None:
    with _listening_after_a_free_port() as taken:
        port = taken.getsockname()[1]
        # The second gateway's port is the busy one.
        with pytest.raises(PortBusy, match=rf"port {port} \(for a gateway\).*--mcp-port"):
            check_ports(DevOptions(mcp_port=port - 1, backend_port=free_port(), gateways=2))
        with pytest.raises(PortBusy, match=rf"port {port} \(for the backend\).*--backend-port"):
            check_ports(DevOptions(mcp_port=free_port(), backend_port=port))


def test_overlapping_or_overflowing_ports_are_refused() -> None:
    with pytest.raises(PortBusy, match="--backend-port or --mcp-port"):
        check_ports(DevOptions(mcp_port=20001, backend_port=20002, gateways=2))
    with pytest.raises(PortBusy, match="past port 65535"):
        check_ports(DevOptions(mcp_port=65535, backend_port=20000, gateways=2))
