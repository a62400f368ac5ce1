"""A bad setting, a malformed URL or an unreachable database: one line naming it, exit 2, for
every command, run as a person runs it (a process, with the setting in its environment)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.commands import assert_one_line, taskgate
from tests.support.ports import free_port

SECRET = "s" * 40


COMMANDS = [
    ["migrate"],
    ["backend", "--port", "0"],
    ["gateway", "--port", "0"],
    ["cache", "show"],
    ["connect", "http://127.0.0.1:1/mcp"],
    ["dev"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda argv: argv[0])
def test_a_value_that_is_not_a_number_is_named_in_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    result = taskgate(tmp_path, {"CACHE_TTL": "abc", "JWT_SECRET": SECRET}, *command)
    assert_one_line(result, f"taskgate {command[0]}: ", "CACHE_TTL: ", "valid number")


@pytest.mark.parametrize("command", [["migrate"], ["backend", "--port", "0"]], ids=str)
def test_a_database_url_without_asyncpg_is_named_with_the_shape_it_needs(
    tmp_path: Path, command: list[str]
) -> None:
    url = "postgresql://taskgate:secret-pw@127.0.0.1:5432/taskgate"
    result = taskgate(tmp_path, {"DATABASE_URL": url, "JWT_SECRET": SECRET}, *command)
    assert_one_line(result, "DATABASE_URL: ", "postgresql+asyncpg://")
    assert "secret-pw" not in result.stderr


def test_a_replica_url_that_is_not_a_url_is_named(tmp_path: Path) -> None:
    result = taskgate(
        tmp_path, {"READ_DATABASE_URL": "replica:5432", "JWT_SECRET": SECRET}, "gateway"
    )
    assert_one_line(result, "taskgate gateway: READ_DATABASE_URL: ")


def test_migrate_against_a_port_nobody_listens_on_says_so(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://taskgate:pw@127.0.0.1:{free_port()}/taskgate"
    result = taskgate(tmp_path, {"DATABASE_URL": url}, "migrate")
    assert_one_line(result, "taskgate migrate: DATABASE_URL: cannot reach 127.0.0.1:")


def test_migrate_against_an_unknown_host_says_so(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://taskgate:pw@no-such-host.invalid:5432/taskgate"
    result = taskgate(tmp_path, {"DATABASE_URL": url}, "migrate")
    assert_one_line(result, "DATABASE_URL: the host 'no-such-host.invalid' is not known")


@pytest.mark.parametrize("url", ["127.0.0.1:8001", "ftp://gateway:8001"])
def test_cache_with_a_malformed_url_names_it(tmp_path: Path, url: str) -> None:
    result = taskgate(tmp_path, {"ADMIN_TOKEN": "a" * 40}, "cache", "show", "--url", url)
    assert_one_line(result, "taskgate cache: --url: ", "not an http(s) URL")
    exported = taskgate(tmp_path, {"ADMIN_TOKEN": "a" * 40, "TASKGATE_ADMIN_URL": url}, "cache",
                        "show")  # fmt: skip
    assert_one_line(exported, "taskgate cache: TASKGATE_ADMIN_URL: ")


def test_connect_with_a_url_that_is_not_http_names_it(tmp_path: Path) -> None:
    result = taskgate(tmp_path, {}, "connect", "127.0.0.1:8001/mcp")
    assert_one_line(result, "taskgate connect: URL: ", "not an http(s) URL")


def test_a_callback_port_without_login_is_refused(tmp_path: Path) -> None:
    result = taskgate(tmp_path, {}, "connect", "--callback-port", "8765", "http://127.0.0.1:1/mcp")
    assert_one_line(result, "taskgate connect: --callback-port: only with --login")


def test_a_callback_port_in_use_is_named_before_any_login(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = taskgate(
            tmp_path, {"CONNECT_TOKENS_FILE": str(tmp_path / "tokens.json")}, "connect",
            "--login", "--callback-port", str(port), "http://127.0.0.1:1/mcp",
        )  # fmt: skip
    assert_one_line(result, f"taskgate connect: --callback-port {port}: cannot listen on")
    assert not (tmp_path / "tokens.json").exists()
