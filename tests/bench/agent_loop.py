"""The agent loop: write a task, read the write, complete it, read again; every reply checked.

    uv run --group bench python -m tests.bench.agent_loop                 # 10 s cells, 1/16/64
    uv run --group bench python -m tests.bench.agent_loop --quick         # 3 s cells
    uv run --group bench python -m tests.bench.agent_loop --baseline REV  # REV's servers beside

Run on purpose (never by pytest or CI). It starts the real stack (PostgreSQL primary and
streaming replica, backend, cached gateway) plus a gateway with CACHE_TTL=0, and with
--baseline the backend and gateways of another commit (`git archive REV`) on the same database,
so every before/after figure is a ratio from one run. The servers and every PostgreSQL process
are pinned to CPU 0 (`taskset -c 0`), the load generators (this process, wrk, pgbench) to CPU 1.

Each connection is one agent with a user of its own, alternating:
`create_task` -> `list_tasks` (must list the new task, not completed) -> `complete_task` ->
`list_tasks` (must list it completed). The same four calls go straight to the backend's REST
API. A reply that is an error (rate_limited included) or a read that misses the write counts as
a failure, never as a call. PostgreSQL's own limit is pgbench running the same INSERT and the
same SELECT as pairs. wrk cross-checks the loops (one thread per connection, so that each Lua
state drives one connection's loop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from taskgate.devstack import Component, Stack, spawn_component, wait_healthy
from taskgate.pgpair import SUPERUSER, find_bindir, free_port
from tests.bench import loop_report, pinning, report, seed
from tests.bench.pinning import CLIENT_CPU, pin_servers_and_client, postmaster_pids
from tests.bench.rawclient import (
    MCP_META,
    BenchError,
    Connection,
    McpEndpoint,
    Reply,
    encode_request,
)
from tests.bench.run import (
    HERE,
    PAGE,
    READ_USERS,
    REPO,
    bench_stack,
    install_uvloop,
    load_average,
    percentile,
    py_spy,
    py_spy_record,
    say,
)

SIZE = 10_000
USERS = 1_000
TASK = {"title": "agent loop task", "description": "created by the agent-loop benchmark"}
# One slice of users per loop, so that no loop reads another's writes.
LOOP_USERS = {
    "gateway": slice(100, 200),
    "backend": slice(200, 300),
    "gateway_uncached": slice(300, 400),
    "base_gateway": slice(400, 500),
    "base_backend": slice(500, 600),
    "base_gateway_uncached": slice(600, 700),
}
KINDS = ("write", "read_after_write", "complete", "read_after_complete")


def postgres_cpu(postmasters: list[int]) -> float:
    """CPU seconds of every PostgreSQL process now alive (both servers and their backends)."""
    total = 0.0
    for pid in postmasters:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    t = proc.cpu_times()
                    total += t.user + t.system
    return total


# -- servers ---------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    host: str
    port: int
    pid: int
    mcp: bool  # an MCP gateway, or the REST backend


@contextlib.contextmanager
def baseline_tree(rev: str | None) -> Iterator[Path | None]:
    """`git archive REV` in a temporary folder: the code the figures are compared against."""
    if rev is None:
        yield None
        return
    snap = Path(tempfile.mkdtemp(prefix="taskgate-baseline-"))
    try:
        archive = subprocess.run(
            ["git", "archive", rev], cwd=REPO, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(snap)], input=archive, check=True)
        yield snap
    finally:
        shutil.rmtree(snap, ignore_errors=True)


def spawn_from(tree: Path, name: str, args: list[str], env: dict[str, str], port: int) -> Component:
    """`python -m taskgate <args>` running the code in `tree` (resolved from the cwd first)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "taskgate", *args],
        cwd=tree,
        env={**os.environ, **env, "PYTHONPATH": str(tree)},
        stdin=subprocess.DEVNULL,
    )
    return Component(name, process, f"http://127.0.0.1:{port}/healthz")


@contextlib.asynccontextmanager
async def started_servers(stack: Stack, baseline: Path | None) -> AsyncIterator[dict[str, Server]]:
    gw_port = int(stack.mcp_url.rsplit(":", 1)[1].split("/")[0])
    be_port = int(stack.backend_url.rsplit(":", 1)[1])
    host = "127.0.0.1"
    servers = {
        "gateway": Server("gateway", host, gw_port, stack.gateway.process.pid, True),
        "backend": Server("backend", host, be_port, stack.backend.process.pid, False),
    }
    extra: list[tuple[Component, Server]] = []
    port = free_port()
    uncached = spawn_component(
        "gateway_uncached",
        ["gateway", "--transport", "http", "--port", str(port)],
        {**stack.env, "CACHE_TTL": "0"},
        f"http://{host}:{port}/healthz",
    )
    extra.append((uncached, Server("gateway_uncached", host, port, uncached.process.pid, True)))
    if baseline is not None:
        be = free_port()
        base_env = {**stack.env, "FASTAPI_BASE_URL": f"http://{host}:{be}"}
        backend = spawn_from(baseline, "base_backend", ["backend", "--port", str(be)], base_env, be)
        extra.append((backend, Server("base_backend", host, be, backend.process.pid, False)))
        for name, ttl in (("base_gateway", stack.env["CACHE_TTL"]), ("base_gateway_uncached", "0")):
            p = free_port()
            gw = spawn_from(
                baseline,
                name,
                ["gateway", "--transport", "http", "--port", str(p)],
                {**base_env, "CACHE_TTL": ttl},
                p,
            )
            extra.append((gw, Server(name, host, p, gw.process.pid, True)))
    try:
        for component, server in extra:
            wait_healthy(component, timeout=180)
            servers[server.name] = server
        yield servers
    finally:
        for component, _ in extra:
            component.stop()


# -- one agent ---------------------------------------------------------------------------


class Failure(Exception):
    """A reply that is not what the loop needed: an error, or a read that missed the write."""

    def __init__(self, kind: str, what: str, stale: bool = False) -> None:
        super().__init__(f"{kind}: {what}")
        self.stale = stale


def _task_in(page: list[dict[str, Any]], task_id: int) -> dict[str, Any] | None:
    return next((t for t in page if t.get("id") == task_id), None)


class Agent:
    """One connection and one user, making the four calls of the loop in turn."""

    def __init__(self, server: Server, token: str) -> None:
        self.server = server
        self.token = token
        self.conn = Connection(server.host, server.port)
        self.endpoint = McpEndpoint(server.host, server.port, "/mcp", token, modern=True)
        self.host = f"{server.host}:{server.port}"

    async def open(self) -> None:
        await self.conn.open()
        if self.server.mcp:
            await self.endpoint.start(self.conn)

    async def close(self) -> None:
        await self.conn.close()

    async def _tool(self, kind: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        reply = await self.conn.send(self.endpoint.call_tool(tool, arguments))
        if reply.status != 200:
            raise Failure(kind, f"HTTP {reply.status}: {reply.body[:200]!r}")
        message = reply.json()
        result = message.get("result")
        if not isinstance(result, dict) or result.get("isError"):
            raise Failure(kind, json.dumps(message)[:300])
        structured: dict[str, Any] = result["structuredContent"]
        return structured

    async def _rest(self, kind: str, method: str, path: str, expect: int, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        raw = None
        if body is not None:
            raw = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
            headers["Idempotency-Key"] = uuid.uuid4().hex  # as the gateway sends one per call
        reply: Reply = await self.conn.send(encode_request(method, self.host, path, headers, raw))
        if reply.status != expect:
            raise Failure(kind, f"HTTP {reply.status}: {reply.body[:200]!r}")
        return reply.json()

    async def write(self) -> int:
        if self.server.mcp:
            task = await self._tool("write", "create_task", TASK)
        else:
            task = await self._rest("write", "POST", "/api/v1/tasks", 201, TASK)
        return int(task["id"])

    async def read(self, kind: str, task_id: int, completed: bool) -> None:
        if self.server.mcp:
            page = await self._tool(kind, "list_tasks", {})
        else:
            page = await self._rest(kind, "GET", "/api/v1/tasks?limit=50", 200)
        task = _task_in(page["tasks"], task_id)
        if task is None or task["completed"] is not completed:
            raise Failure(kind, f"task {task_id} {'missing' if task is None else 'stale'}", True)

    async def complete(self, task_id: int) -> None:
        if self.server.mcp:
            task = await self._tool("complete", "complete_task", {"task_id": task_id})
        else:
            path = f"/api/v1/tasks/{task_id}/complete"
            task = await self._rest("complete", "POST", path, 200)
        if task.get("completed") is not True:
            raise Failure("complete", f"task {task_id} not completed in the reply")


# -- cells -----------------------------------------------------------------------------------


@dataclass
class Cell:
    scenario: str
    label: str
    server: str
    concurrency: int
    requests: int
    failures: int
    stale_reads: int
    seconds: float
    throughput: float  # checked requests per second
    p50_ms: float
    p99_ms: float
    kinds: dict[str, dict[str, float]] = field(default_factory=dict)  # p50/p99 per call kind
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)
    first_failure: str = ""
    source: str = "raw client"


@dataclass
class Probe:
    """Latencies per call kind, and what went wrong."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    failures: int = 0
    stale: int = 0
    first: str = ""

    def failed(self, exc: Failure) -> None:
        self.failures += 1
        self.stale += exc.stale
        if not self.first:
            self.first = str(exc)


async def agent_loop(agent: Agent, probe: Probe, measure_from: float, stop_at: float) -> None:
    perf = time.perf_counter

    def keep(kind: str, t0: float) -> None:
        if t0 >= measure_from:
            probe.latencies[kind].append(perf() - t0)

    while perf() < stop_at:
        t0 = perf()
        try:
            task_id = await agent.write()
            keep("write", t0)
            t0 = perf()
            await agent.read("read_after_write", task_id, completed=False)
            keep("read_after_write", t0)
            t0 = perf()
            await agent.complete(task_id)
            keep("complete", t0)
            t0 = perf()
            await agent.read("read_after_complete", task_id, completed=True)
            keep("read_after_complete", t0)
        except Failure as exc:
            if t0 >= measure_from:
                probe.failed(exc)


async def reads_alone(agent: Agent, probe: Probe, measure_from: float, stop_at: float) -> None:
    """`list_tasks` by a reader who never writes: a read with no pending write."""
    perf = time.perf_counter
    while perf() < stop_at:
        t0 = perf()
        try:
            page = await agent._tool("read", "list_tasks", {})
            if len(page["tasks"]) != PAGE:
                raise Failure("read", f"{len(page['tasks'])} tasks, not {PAGE}")
        except Failure as exc:
            if t0 >= measure_from:
                probe.failed(exc)
            continue
        if t0 >= measure_from:
            probe.latencies["read"].append(perf() - t0)


async def pings(agent: Agent, probe: Probe, measure_from: float, stop_at: float) -> None:
    perf = time.perf_counter
    while perf() < stop_at:
        t0 = perf()
        try:
            if await agent._tool("ping", "ping", {}) != {"result": "pong"}:
                raise Failure("ping", "not pong")
        except Failure as exc:
            if t0 >= measure_from:
                probe.failed(exc)
            continue
        if t0 >= measure_from:
            probe.latencies["ping"].append(perf() - t0)


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    server: str
    kind: str  # "loop", "read" or "ping"


class Bench:
    def __init__(
        self,
        stack: Stack,
        servers: dict[str, Server],
        tokens: dict[int, str],
        backend_tokens: dict[int, str],
        user_ids: list[int],
    ) -> None:
        self.stack = stack
        self.servers = servers
        self.tokens = tokens
        self.backend_tokens = backend_tokens
        self.user_ids = user_ids
        self.last_seeded_id = 0
        self.postmasters = postmaster_pids(stack)

    def users(self, scn: Scenario) -> list[int]:
        return self.user_ids[LOOP_USERS[scn.server] if scn.kind == "loop" else READ_USERS]

    def token_for(self, server: Server, user_id: int) -> str:
        return (self.tokens if server.mcp else self.backend_tokens)[user_id]

    def new_tally(self, scn: Scenario) -> Tally:
        probe = Probe()
        if scn.kind != "loop":
            probe.latencies = {scn.kind: []}
        return Tally(probe)

    async def run_slice(
        self, scn: Scenario, concurrency: int, warmup: float, duration: float, tally: Tally
    ) -> None:
        """`concurrency` agents for `duration` measured seconds, added to the tally."""
        server = self.servers[scn.server]
        users = self.users(scn)
        agents = [Agent(server, self.token_for(server, users[i])) for i in range(concurrency)]
        for agent in agents:
            await agent.open()
        body = {"loop": agent_loop, "read": reads_alone, "ping": pings}[scn.kind]
        start = time.perf_counter()
        measure_from, stop_at = start + warmup, start + warmup + duration
        procs = {n: psutil.Process(s.pid) for n, s in self.servers.items()}

        def cpu_now() -> dict[str, float]:
            out = {n: sum(p.cpu_times()[:2]) for n, p in procs.items()}
            out["postgres"] = postgres_cpu(self.postmasters)
            return out

        async def sample_cpu() -> dict[str, float]:
            await asyncio.sleep(warmup)
            return cpu_now()

        sampler = asyncio.create_task(sample_cpu())
        await asyncio.gather(*(body(a, tally.probe, measure_from, stop_at) for a in agents))
        cpu_end = cpu_now()
        cpu_start = await sampler
        for agent in agents:
            await agent.close()
        if scn.kind == "loop":
            await seed.delete_tasks_after(self.stack.pair, self.last_seeded_id)
        for name, end in cpu_end.items():
            tally.cpu_s[name] = tally.cpu_s.get(name, 0.0) + end - cpu_start[name]
        tally.seconds += duration

    async def run_cell(
        self, scn: Scenario, concurrency: int, warmup: float, duration: float
    ) -> Cell:
        tally = self.new_tally(scn)
        await self.run_slice(scn, concurrency, warmup, duration, tally)
        return cell_of(scn, concurrency, tally)


@dataclass
class Tally:
    """One scenario's calls at one concurrency, over one or several interleaved slices."""

    probe: Probe
    cpu_s: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def cell_of(scn: Scenario, concurrency: int, tally: Tally) -> Cell:
    probe = tally.probe
    flat = sorted(x for per in probe.latencies.values() for x in per)
    n = len(flat)
    cpu = {k: v * 1000 / n if n else float("nan") for k, v in tally.cpu_s.items()}
    busiest = max(cpu.values(), default=0.0)
    kinds = {}
    for kind, values in probe.latencies.items():
        values.sort()
        kinds[kind] = {
            "p50_ms": percentile(values, 0.5) * 1000,
            "p99_ms": percentile(values, 0.99) * 1000,
            "count": float(len(values)),
        }
    return Cell(
        scenario=scn.key,
        label=scn.label,
        server=scn.server,
        concurrency=concurrency,
        requests=n,
        failures=probe.failures,
        stale_reads=probe.stale,
        seconds=tally.seconds,
        throughput=n / tally.seconds if tally.seconds else float("nan"),
        p50_ms=percentile(flat, 0.5) * 1000,
        p99_ms=percentile(flat, 0.99) * 1000,
        kinds=kinds,
        # The processes doing this scenario's work (idle ones burn a little too).
        cpu_ms_per_request={k: v for k, v in cpu.items() if v >= 0.1 * busiest},
        first_failure=probe.first,
    )


def scenarios(servers: dict[str, Server]) -> list[Scenario]:
    out = [
        Scenario("loop_gw", "agent loop through the gateway", "gateway", "loop"),
        Scenario("loop_direct", "agent loop straight to FastAPI", "backend", "loop"),
        Scenario(
            "loop_gw_uncached",
            "agent loop through the gateway, CACHE_TTL=0",
            "gateway_uncached",
            "loop",
        ),
        Scenario("uncached", "`list_tasks` alone, CACHE_TTL=0", "gateway_uncached", "read"),
        Scenario("cached", "`list_tasks` alone, cached", "gateway", "read"),
        Scenario("noop", "no-op tool (`ping`)", "gateway", "ping"),
    ]
    if "base_gateway" in servers:
        out += [
            Scenario("base_loop_gw", "baseline: agent loop through the gateway", "base_gateway",
                     "loop"),
            Scenario("base_loop_direct", "baseline: agent loop straight to FastAPI",
                     "base_backend", "loop"),
            Scenario("base_uncached", "baseline: `list_tasks` alone, CACHE_TTL=0",
                     "base_gateway_uncached", "read"),
            Scenario("base_cached", "baseline: `list_tasks` alone, cached", "base_gateway",
                     "read"),
            Scenario("base_noop", "baseline: no-op tool (`ping`)", "base_gateway", "ping"),
        ]  # fmt: skip
    return out


# -- PostgreSQL's own limit: pgbench -----------------------------------------------------------

PGBENCH_SCRIPT = """\\set uid random({first}, {last})
INSERT INTO tasks (user_id, title, description) VALUES (:uid, 'agent loop task', 'created by pgbench');
SELECT id, user_id, title, description, completed, created_at, updated_at FROM tasks WHERE user_id = :uid ORDER BY created_at DESC, id DESC LIMIT 51;
"""  # noqa: E501


async def pgbench(bench: Bench, clients: int, duration: float, workdir: Path) -> dict[str, Any]:
    """INSERT then SELECT, as pairs per second, on the primary (pinned beside the servers)."""
    users = bench.user_ids[LOOP_USERS["gateway"]]
    script = workdir / "pair.sql"
    script.write_text(PGBENCH_SCRIPT.format(first=min(users), last=max(users)))
    url = bench.stack.pair.url(SUPERUSER, driver="postgresql")
    binary = find_bindir() / "pgbench"
    proc = await asyncio.create_subprocess_exec(
        "taskset", "-c", str(CLIENT_CPU), str(binary), "-n", "-M", "prepared",
        "-c", str(clients), "-j", "1", "-T", str(max(1, round(duration))), "-f", str(script),
        url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    await seed.delete_tasks_after(bench.stack.pair, bench.last_seeded_id)
    text = out.decode()
    if proc.returncode != 0:
        raise BenchError(f"pgbench failed: {err.decode()[-500:]}")
    tps = float(next(x for x in text.splitlines() if x.startswith("tps =")).split()[2])
    latency = next((x for x in text.splitlines() if x.startswith("latency average")), "")
    failed = next((x for x in text.splitlines() if "failed transactions" in x), "")
    return {
        "concurrency": clients,
        "pairs_per_s": tps,
        "latency": latency,
        "failed": failed,
    }


# -- wrk ---------------------------------------------------------------------------------------

WRK_MARK = "WRK_JSON "
WRK_LOOP = """
local threads, counter = {}, 0

function setup(thread)
  counter = counter + 1
  thread:set("me", counter)
  table.insert(threads, thread)
end

function init(args)
  step, task_id, failures, stale, answers = 0, nil, 0, 0, 0
  headers = agents[me].headers
end

local function call(tool, args)
  local body = '{"jsonrpc":"2.0","method":"tools/call","id":1,"params":{"name":"' .. tool ..
    '","arguments":' .. args .. ',"_meta":' .. meta .. '}}'
  headers["Mcp-Name"] = tool
  return wrk.format("POST", path, headers, body)
end

function request()
  if mcp then
    if step == 0 then return call("create_task", create_args) end
    if step == 2 then return call("complete_task", '{"task_id":' .. task_id .. '}') end
    return call("list_tasks", "{}")
  end
  headers["Content-Type"] = nil
  headers["Idempotency-Key"] = nil
  if step == 0 then
    headers["Content-Type"] = "application/json"
    headers["Idempotency-Key"] = tostring(me) .. "-" .. tostring(answers)
    return wrk.format("POST", "/api/v1/tasks", headers, create_args)
  end
  if step == 2 then
    return wrk.format("POST", "/api/v1/tasks/" .. task_id .. "/complete", headers)
  end
  return wrk.format("GET", "/api/v1/tasks?limit=50", headers)
end

-- The task's own object in a reply: from its id to the next closing brace.
local function task_in(body, id)
  local from = body:find('"id":%s*' .. id .. '%s*,')
  if not from then return nil end
  return body:sub(from, body:find("}", from, true))
end

function response(status, hdrs, body)
  answers = answers + 1
  local want = (step == 0 and not mcp) and 201 or 200
  local ok = status == want
  if ok and mcp then
    local at = body:find('"structuredContent":', 1, true)
    ok = at ~= nil and not body:find('"isError":%s*true')
    if ok then body = body:sub(at) end
  end
  if ok and step == 0 then
    task_id = body:match('"id":%s*(%d+)')
    ok = task_id ~= nil
  elseif ok and (step == 1 or step == 3) then
    local task = task_in(body, task_id)
    local seen = task and task:match('"completed":%s*(%a+)')
    if seen ~= (step == 3 and "true" or "false") then
      ok, stale = false, stale + 1
    end
  elseif ok and step == 2 then
    ok = body:find('"completed":%s*true') ~= nil
  end
  if ok then
    step = (step + 1) % 4
  else
    failures = failures + 1
    step = 0
  end
end

function done(summary, latency, requests_)
  local failed, stale_reads, seen = 0, 0, 0
  for _, t in ipairs(threads) do
    failed = failed + t:get("failures")
    stale_reads = stale_reads + t:get("stale")
    seen = seen + t:get("answers")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"socket_errors":%d,"failures":%d,"stale":%d,"answers":%d}\\n',
    summary.requests, summary.duration, math.floor(latency:percentile(50)),
    math.floor(latency:percentile(99)), latency.max,
    e.connect + e.read + e.write + e.timeout, failed, stale_reads, seen))
end
"""


def _lua(value: str) -> str:
    return json.dumps(value)  # a JSON string of ASCII is a valid Lua string literal


def wrk_script(bench: Bench, scn: Scenario, connections: int) -> str:
    server = bench.servers[scn.server]
    users = bench.users(scn)[:connections]
    agents = []
    for uid in users:
        token = bench.token_for(server, uid)
        if server.mcp:
            endpoint = McpEndpoint(server.host, server.port, "/mcp", token, modern=True)
            headers = endpoint._headers("tools/call", "list_tasks")
        else:
            headers = {"Authorization": f"Bearer {token}"}
        fields = ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in headers.items())
        agents.append(f"{{ headers = {{ {fields} }} }}")
    meta = json.dumps(MCP_META, separators=(",", ":"))
    return (
        f"mcp = {'true' if server.mcp else 'false'}\n"
        f"path = {_lua('/mcp')}\n"
        f"meta = {_lua(meta)}\n"
        f"create_args = {_lua(json.dumps(TASK, separators=(',', ':')))}\n"
        "agents = {\n" + ",\n".join(agents) + "\n}\n" + WRK_LOOP
    )


async def run_wrk(
    bench: Bench, scn: Scenario, connections: int, duration: float, workdir: Path
) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed: apt-get install -y wrk")
    server = bench.servers[scn.server]
    script = workdir / f"{scn.key}-{connections}.lua"
    script.write_text(wrk_script(bench, scn, connections))
    proc = await asyncio.create_subprocess_exec(
        "taskset", "-c", str(CLIENT_CPU), wrk, f"-t{connections}", f"-c{connections}",
        f"-d{max(1, round(duration))}s", "--timeout", "30s", "--latency", "-s", str(script),
        f"http://{server.host}:{server.port}/",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    await seed.delete_tasks_after(bench.stack.pair, bench.last_seeded_id)
    lines = [x for x in out.decode().splitlines() if x.startswith(WRK_MARK)]
    if proc.returncode != 0 or not lines:
        raise BenchError(f"wrk failed ({proc.returncode}): {err.decode()[-500:]}")
    got: dict[str, Any] = json.loads(lines[-1][len(WRK_MARK) :])
    seconds = got["duration_us"] / 1e6
    good = got["answers"] - got["failures"]
    return {
        "scenario": scn.key,
        "label": scn.label,
        "concurrency": connections,
        "throughput": good / seconds,
        "p50_ms": got["p50_us"] / 1000,
        "p99_ms": got["p99_us"] / 1000,
        "max_ms": got["max_us"] / 1000,
        "failures": got["failures"] + got["socket_errors"],
        "stale_reads": got["stale"],
        "source": "wrk",
    }


# -- profile -----------------------------------------------------------------------------------


# Which backend a loop's server writes through: the pair profiled together.
_PROFILED_WITH = {
    "gateway": ["gateway", "backend"],
    "gateway_uncached": ["gateway_uncached", "backend"],
    "backend": ["backend"],
    "base_gateway": ["base_gateway", "base_backend"],
    "base_gateway_uncached": ["base_gateway_uncached", "base_backend"],
    "base_backend": ["base_backend"],
}


def _round_trip_share(raw: Path) -> float:
    """The share of samples spent handing a statement to PostgreSQL (asyncpg's socket write):
    on one core, each round trip gives the core to PostgreSQL and back."""
    total = waiting = 0
    if not raw.exists():
        return float("nan")
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        if "asyncpg" in stack and stack.rsplit(";", 1)[-1].startswith(
            "_SelectorSocketTransport.write"
        ):
            waiting += int(count)
    return waiting / total if total else float("nan")


async def profile_loop(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """py-spy on each process of the loop at once (a gateway and its backend), while 16 agents
    run it; PostgreSQL's share is its CPU per request in the same cell."""
    spy = py_spy()
    out: dict[str, Any] = {}
    for key in args.profile.split(","):
        scn = next(s for s in scenarios(bench.servers) if s.key == key)
        seconds = max(5, round(args.duration))
        raws, procs = {}, []
        for name in _PROFILED_WITH[scn.server]:
            raw = args.out / f"profile-{key}-{name}.txt"
            raws[name] = raw
            procs.append(py_spy_record(spy, bench.servers[name].pid, seconds, raw))
        await asyncio.sleep(0.5)
        cell = await bench.run_cell(scn, 16, 0.5, seconds)
        for proc in procs:
            await asyncio.to_thread(proc.wait)
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cell.cpu_ms_per_request.items()))
        out[key] = {"cell": asdict(cell), "summaries": {}}
        for name, raw in raws.items():
            summary = report.summarise_profile(raw)
            out[key]["summaries"][name] = summary
            text = args.out / f"profile-{key}-{name}-summary.txt"
            lines = [
                f"py-spy, {name}, 16 agents running {scn.label}, {seconds} s at 250 Hz",
                f"{cell.throughput:.1f} requests/s; CPU ms per request: {cpu}",
                f"samples handing a statement to PostgreSQL (asyncpg socket write): "
                f"{_round_trip_share(raw):.1%}",
                "",
            ]
            lines += ["inclusive:"] + [f"{s:6.1%}  {n}" for n, s in summary["inclusive"][:45]]
            lines += ["", "self:"] + [f"{s:6.1%}  {n}" for n, s in summary["self"][:30]]
            text.write_text("\n".join(lines) + "\n")
            say(f"profiled {name}: {text}")
    return out


# -- the run -----------------------------------------------------------------------------------


async def prepare(stack: Stack) -> tuple[list[int], int]:
    user_ids = await seed.seed_users(stack.pair, USERS)
    with_pages = user_ids[READ_USERS] + [
        u for users in LOOP_USERS.values() for u in user_ids[users]
    ]
    await seed.give_tasks(stack.pair, with_pages, PAGE)
    last = await seed.grow_tasks(stack.pair, user_ids, SIZE)
    await seed.wait_replayed(stack.pair)
    return user_ids, last


async def drive(args: argparse.Namespace, stack: Stack, baseline: Path | None) -> dict[str, Any]:
    async with started_servers(stack, baseline) as servers:
        user_ids, last = await prepare(stack)
        secret = stack.env["JWT_SECRET"]
        bench = Bench(
            stack,
            servers,
            seed.tokens_for(secret, user_ids, stack.env["MCP_PUBLIC_URL"]),
            seed.backend_tokens_for(secret, user_ids),
            user_ids,
        )
        bench.last_seeded_id = last
        pin_servers_and_client([server.pid for server in servers.values()], stack)
        wanted = scenarios(servers)
        if args.only:
            wanted = [s for s in wanted if s.key in args.only.split(",")]
        conns = [int(c) for c in args.connections.split(",")]
        cells: list[Cell] = []
        wrk_cells: list[dict[str, Any]] = []
        pg: list[dict[str, Any]] = []
        load_before = load_average()
        workdir = Path(tempfile.mkdtemp(prefix="taskgate-loop-"))
        try:
            # Warm each reader's cached page and each server's pools before any clock starts.
            for scn in wanted:
                await bench.run_cell(scn, min(conns[-1], 16), 0.0, 0.5)
            for n in conns:
                # Rounds of short slices, every scenario in turn: the machine's load, which
                # others share, then weighs on each scenario alike.
                tallies = {scn.key: bench.new_tally(scn) for scn in wanted}
                for _ in range(args.rounds):
                    for scn in wanted:
                        await bench.run_slice(
                            scn, n, args.warmup, args.duration / args.rounds, tallies[scn.key]
                        )
                for scn in wanted:
                    cell = cell_of(scn, n, tallies[scn.key])
                    cells.append(cell)
                    say(
                        f"{n:>2} conns  {scn.key:<18} {cell.throughput:8.1f}/s  "
                        f"p50 {cell.p50_ms:7.2f}  p99 {cell.p99_ms:7.2f} ms  "
                        f"failures {cell.failures} (stale {cell.stale_reads})"
                    )
                if not args.no_pgbench:
                    pg.append(await pgbench(bench, n, args.duration, workdir))
                    say(f"{n:>2} conns  pgbench pairs {pg[-1]['pairs_per_s']:8.1f}/s")
            if not args.no_wrk:
                for n in conns:
                    for scn in wanted:
                        if scn.kind != "loop" or scn.key == "loop_gw_uncached":
                            continue
                        got = await run_wrk(bench, scn, n, args.duration, workdir)
                        wrk_cells.append(got)
                        say(
                            f"wrk {n:>2} conns  {scn.key:<18} {got['throughput']:8.1f}/s  "
                            f"p50 {got['p50_ms']:7.2f}  p99 {got['p99_ms']:7.2f} ms  "
                            f"failures {got['failures']} (stale {got['stale_reads']})"
                        )
            profile = await profile_loop(bench, args) if args.profile else {}
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return {
            "cells": [asdict(c) for c in cells],
            "wrk": wrk_cells,
            "pgbench": pg,
            "profile": profile,
            "load_before": load_before,
            "load_after": load_average(),
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.bench.agent_loop",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="3 s cells")
    p.add_argument("--connections", default="1,16,64")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--duration", type=float, help="measured seconds per cell")
    p.add_argument(
        "--rounds", type=int, default=1, help="split each cell into this many interleaved slices"
    )
    p.add_argument("--only", help="scenario keys, comma-separated")
    p.add_argument("--baseline", help="a commit whose backend and gateways run beside")
    p.add_argument("--cache-ttl", type=float, default=300.0)
    p.add_argument("--no-wrk", action="store_true")
    p.add_argument("--no-pgbench", action="store_true")
    p.add_argument("--profile", default="", help="loop scenarios to profile with py-spy")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--name", default="agent-loop", help="the results files' name")
    args = p.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    install_uvloop()
    args.out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    with baseline_tree(args.baseline) as baseline, bench_stack(args) as stack:
        data = asyncio.run(drive(args, stack, baseline))
    data["environment"] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit,
        "baseline": args.baseline,
        "cpus": os.cpu_count(),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "cache_ttl": args.cache_ttl,
        "pinning": pinning.described(),
    }
    for path in loop_report.write_all(data, args.out, args.name):
        say(f"wrote {path}")


if __name__ == "__main__":
    main()
