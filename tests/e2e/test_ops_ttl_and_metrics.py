"""Operators on a running system: the TTL changed from the command line takes effect at once,
reaches a second gateway through Redis, and /metrics counts the traffic."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families

from shared.api import REQUEST_ID_HEADER
from shared.migrate import upgrade_to_head
from taskgate.devstack import Component, Stack, stack_env, wait_healthy
from taskgate.pgpair import PgPair
from tests.support.agents import sign_up_for_mcp
from tests.support.faults import replay_paused
from tests.support.mcp_client import mcp_session
from tests.support.ports import free_port
from tests.support.readmodel import wait_replayed
from tests.support.redis import running_redis
from tests.support.waiting import wait_until

ADMIN_TOKEN = "ops-admin-Tz5qW8vL3xKp9RmN2bH6cJ4dF1sG7yA0"  # random: the weak-secret guard


@dataclass
class OpsStack:
    stack: Stack
    other_gateway: str  # base URL of a second gateway on the same Redis
    logs: Path  # <component name>.log, each process's stderr

    def log_lines(self, name: str) -> list[dict[str, Any]]:
        """The JSON log lines of one process (LOG_JSON is on)."""
        text = (self.logs / f"{name}.log").read_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    @property
    def gateway(self) -> str:
        return self.stack.mcp_url.removesuffix("/mcp")

    @property
    def replica(self) -> str:
        """The replica's label in the metrics."""
        return f"127.0.0.1:{self.stack.pair.replica_port}"


@pytest.fixture(scope="module")
def ops() -> Iterator[OpsStack]:
    """A pair, Redis, a backend and two gateways sharing that Redis, with the admin API on."""
    root = Path(tempfile.mkdtemp(prefix="taskgate-test-ops-"))
    try:
        with running_redis() as redis, ExitStack() as stop, PgPair(root) as pair:
            upgrade_to_head(pair.database_url)
            backend_port, ports = free_port(), (free_port(), free_port())
            env = {
                **stack_env(pair, backend_port, secrets.token_urlsafe(32)),
                "CACHE_URL": redis.url,
                "ADMIN_TOKEN": ADMIN_TOKEN,
                "CACHE_TTL_SYNC_SECONDS": "0.1",
                "REPLICA_LAG_SAMPLE_SECONDS": "0.1",
                "LOG_JSON": "true",
            }
            backend_url = f"http://127.0.0.1:{backend_port}"
            components = [
                spawn_logged(
                    root, "backend", ["backend", "--port", str(backend_port)], env, backend_url
                ),
                *(
                    spawn_logged(
                        root,
                        f"gateway-{port}",
                        ["gateway", "--transport", "http", "--port", str(port)],
                        env,
                        f"http://127.0.0.1:{port}",
                    )
                    for port in ports
                ),
            ]
            for component in components:
                stop.callback(component.stop)
            for component in components:
                wait_healthy(component, timeout=180)  # the test machine may be busy
            stack = Stack(
                pair,
                components[0],
                components[1],
                env,
                f"http://127.0.0.1:{ports[0]}/mcp",
                backend_url,
                extra=components[2:],
            )
            yield OpsStack(stack, f"http://127.0.0.1:{ports[1]}", root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def spawn_logged(
    root: Path, name: str, args: list[str], env: dict[str, str], base_url: str
) -> Component:
    """spawn_component, with the process's stderr (its log) kept in root/<name>.log."""
    with (root / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "taskgate", *args],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stderr=log,
        )
    return Component(name, process, f"{base_url}/healthz")


def taskgate_cache(gateway: str, *args: str) -> dict[str, Any]:
    """Run `taskgate cache ...` as an operator would, against one gateway."""
    result = subprocess.run(
        [sys.executable, "-m", "taskgate", "cache", "--url", gateway, "--actor", "e2e", *args],
        env={**os.environ, "ADMIN_TOKEN": ADMIN_TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert ADMIN_TOKEN not in result.stdout + result.stderr
    shown: dict[str, Any] = json.loads(result.stdout)
    return shown


def scrape(gateway: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{gateway}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def only_replica(scraped: dict[Any, float], name: str) -> float:
    """The one replica's sample of a per-replica metric (labelled replica=host:port)."""
    (value,) = [v for (n, labels), v in scraped.items() if n == name and labels[0][0] == "replica"]
    return value


def moved(before: dict[Any, float], after: dict[Any, float], name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def task_titles(url: str, token: str) -> list[str]:
    async with mcp_session(url, token) as client:
        listed = await client.call_tool("list_tasks", {})
    assert not listed.is_error, listed.content
    assert listed.structured_content is not None
    return [t["title"] for t in listed.structured_content["tasks"]]


def insert_behind_the_gateways_back(stack: Stack, user_id: int, title: str) -> None:
    """Another writer: the row reaches the replica, but no gateway knows it was written."""
    lsn = stack.pair.psql(
        f"INSERT INTO tasks (user_id, title) VALUES ({user_id}, '{title}');"
        "SELECT pg_current_wal_lsn()"
    ).splitlines()[-1]
    wait_replayed(stack.pair, lsn)


async def test_ttl_set_from_the_command_line_takes_effect_on_the_running_gateway(
    ops: OpsStack,
) -> None:
    user_id, token = sign_up_for_mcp(ops.stack.backend_url)
    shown = taskgate_cache(ops.gateway, "set-ttl", "300", "--tool", "list_tasks")
    assert (shown["old"], shown["new"], shown["effective_ttl"]["list_tasks"]) == (None, 300, 300)

    assert await task_titles(ops.stack.mcp_url, token) == []  # cached for 300 s
    insert_behind_the_gateways_back(ops.stack, user_id, "written elsewhere")
    # Cached: the gateway still answers from before the insert.
    assert await task_titles(ops.stack.mcp_url, token) == []

    taskgate_cache(ops.gateway, "set-ttl", "0", "--tool", "list_tasks")
    assert await task_titles(ops.stack.mcp_url, token) == ["written elsewhere"]

    shown = taskgate_cache(ops.gateway, "show")
    assert shown["effective_ttl"]["list_tasks"] == 0
    assert shown["stats"]["hits"] >= 1


async def test_ttl_change_through_one_gateway_reaches_the_other(ops: OpsStack) -> None:
    taskgate_cache(ops.gateway, "set-ttl", "17")
    # CACHE_TTL_SYNC_SECONDS is 0.1 here
    wait_until(
        lambda: taskgate_cache(ops.other_gateway, "show")["effective_ttl"]["get_task"] == 17,
        "the other gateway's TTL",
    )
    shown = taskgate_cache(ops.other_gateway, "show")
    assert shown["ttl"]["cache_ttl"] == 17
    assert shown["shared"] is True


async def test_metrics_count_tool_calls_cache_use_and_read_your_writes(ops: OpsStack) -> None:
    taskgate_cache(ops.gateway, "set-ttl", "60", "--flush")
    taskgate_cache(ops.gateway, "set-ttl", "--tool", "list_tasks", "--unset")
    _, token = sign_up_for_mcp(ops.stack.backend_url)
    before = scrape(ops.gateway)
    async with mcp_session(ops.stack.mcp_url, token) as client:
        created = await client.call_tool("create_task", {"title": "counted"})
        assert not created.is_error, created.content
        for _ in range(2):  # a miss that waits for the write, then a hit
            assert not (await client.call_tool("list_tasks", {})).is_error
        missing = await client.call_tool("get_task", {"task_id": 2**62})
        assert missing.is_error
        bad = await client.call_tool("create_task", {"title": ""})
        assert bad.is_error
        for _ in range(3):  # names agents make up must not become label values
            made_up = await client.call_tool(f"tool-{secrets.token_hex(4)}", {})
            assert made_up.is_error
    after = scrape(ops.gateway)

    calls = "taskgate_tool_calls_total"
    assert moved(before, after, calls, tool="create_task", outcome="ok") == 1
    assert moved(before, after, calls, tool="list_tasks", outcome="ok") == 2
    assert moved(before, after, calls, tool="get_task", outcome="not_found") == 1
    assert moved(before, after, calls, tool="create_task", outcome="validation_error") == 1
    assert moved(before, after, calls, tool="unknown", outcome="not_found") == 3
    assert not any(name == calls and "tool-" in str(labels) for name, labels in after)
    latency = "taskgate_tool_call_duration_seconds_count"
    assert moved(before, after, latency, tool="list_tasks") == 2
    assert moved(before, after, "taskgate_cache_hits_total") == 1
    assert moved(before, after, "taskgate_cache_misses_total") == 2  # list_tasks, get_task
    assert moved(before, after, "taskgate_read_ryw_waits_total") >= 1
    assert after[("taskgate_cache_ttl_seconds", (("tool", "list_tasks"),))] == 60
    assert only_replica(after, "taskgate_replica_up") == 1
    assert moved(before, after, "taskgate_replica_reads_total", replica=ops.replica) == 2


async def test_replica_lag_shows_in_metrics_while_replay_is_paused(ops: OpsStack) -> None:
    # A transaction the replica replays first, so the lag in seconds has a start to count from.
    sign_up_for_mcp(ops.stack.backend_url)
    wait_replayed(ops.stack.pair, ops.stack.pair.psql("SELECT pg_current_wal_lsn()"))
    with replay_paused(ops.stack.pair):
        sign_up_for_mcp(ops.stack.backend_url)  # WAL the replica receives but cannot replay

        def lagging() -> bool:  # REPLICA_LAG_SAMPLE_SECONDS is 0.1 here
            sample = scrape(ops.gateway)
            lag_bytes = only_replica(sample, "taskgate_replica_lag_bytes")
            return lag_bytes > 0 and only_replica(sample, "taskgate_replica_lag_seconds") > 0

        wait_until(lagging, "lag in bytes and in seconds, in one scrape")


def test_gateway_and_backend_are_ready_when_their_dependencies_are(ops: OpsStack) -> None:
    gateway = httpx.get(f"{ops.gateway}/readyz", timeout=10)
    assert gateway.status_code == 200, gateway.text
    assert gateway.json()["checks"] == {"replica": "up", "backend": "up", "cache": "up"}
    backend = httpx.get(f"{ops.stack.backend_url}/readyz", timeout=10)
    assert backend.status_code == 200, backend.text


async def test_request_id_follows_a_tool_call_into_the_backend_log(ops: OpsStack) -> None:
    _, token = sign_up_for_mcp(ops.stack.backend_url)
    request_id = f"e2e-{secrets.token_hex(8)}"
    headers = {"Authorization": f"Bearer {token}", REQUEST_ID_HEADER: request_id}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(ops.stack.mcp_url, http_client=http)) as client,
    ):
        created = await client.call_tool("create_task", {"title": "traced"})
    assert not created.is_error, created.content

    gateway_name = ops.stack.gateway.name
    calls = [line for line in ops.log_lines(gateway_name) if line.get("tool") == "create_task"]
    assert request_id in [line.get("request_id") for line in calls]
    backend = [line for line in ops.log_lines("backend") if line.get("request_id") == request_id]
    assert any("POST /api/v1/tasks" in line["message"] for line in backend), backend


def test_no_secret_reaches_any_log(ops: OpsStack) -> None:
    secrets_in_play = {
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "JWT_SECRET": ops.stack.env["JWT_SECRET"],
        "app password": ops.stack.pair.app_password,
        "reader password": ops.stack.pair.reader_password,
    }
    for log in ops.logs.glob("*.log"):
        text = log.read_text()
        assert text, f"{log.name} is empty"
        for name, value in secrets_in_play.items():
            assert value not in text, f"{name} appears in {log.name}"
        assert "Bearer ey" not in text, f"a bearer token appears in {log.name}"


async def test_backend_errors_are_counted_and_readiness_drops_when_the_backend_stops(
    ops: OpsStack,
) -> None:
    """Last in this module: it stops the backend."""
    _, token = sign_up_for_mcp(ops.stack.backend_url)
    ops.stack.backend.stop()
    before = scrape(ops.gateway)

    async with mcp_session(ops.stack.mcp_url, token) as client:
        result = await client.call_tool("create_task", {"title": "nowhere to go"})
    assert result.is_error
    assert "backend_unavailable" in str(result.content)
    after = scrape(ops.gateway)
    assert moved(before, after, "taskgate_backend_errors_total", reason="unavailable") == 1
    tool = "taskgate_tool_calls_total"
    assert moved(before, after, tool, tool="create_task", outcome="backend_unavailable") == 1
    async with httpx.AsyncClient(timeout=10) as http:
        ready = await http.get(f"{ops.gateway}/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["backend"] == "down"
