"""The benchmark's cross-check with an independent load generator: wrk, driving the same stack.

    uv run --group bench python -m tests.bench.wrk            # 10 s per cell, 1/16/64 connections
    uv run --group bench python -m tests.bench.wrk --quick    # 3 s per cell, 16/64 connections
    uv run --group bench python -m tests.bench.wrk --pin      # servers on CPU 0, wrk on CPU 1

Run on purpose (never by pytest or CI). It starts what `tests.bench.run` starts, seeds 10,000
tasks (every reader with a full 50-task page), warms each reader's cached page, then runs
Debian's `wrk` (`apt-get install -y wrk`) against each server in turn: closed loop, one request
in flight per connection, `--latency`. Each request is the raw client's bytes for one reader
(the same JSON-RPC `tools/call`, bearer, Accept, Content-Type and MCP-Protocol-Version headers),
the readers taken in turn. The servers measured are stateless, so no connection needs an MCP
session; the fastapi-mcp peer (sessions only) is left to the raw client. A Lua `response` hook
counts non-200 answers, JSON-RPC errors and tool errors: a cell with any fails the run.

wrk 4 corrects its latencies for coordinated omission before it reports them (`stats_correct`:
each call slower than the mean interval between one connection's calls adds the calls a
fixed-rate client would have sent meanwhile). A closed-loop client never sends those, so a few
long stalls, invisible in the raw client's p99, can make wrk's p99; the slowest call (max, not
corrected) is printed beside it to tell the two apart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from taskgate.devstack import Stack
from tests.bench import pinning, report
from tests.bench.rawclient import BenchError, McpEndpoint, check_rpc
from tests.bench.run import (
    HERE,
    READ_USERS,
    Bench,
    Scenario,
    bench_stack,
    ensure_peer_venv,
    grow,
    install_uvloop,
    load_average,
    say,
    scenarios_for_10k,
    started_bench,
)

DEFAULT_SCENARIOS = "cached,noop,fastmcp_cached,sdk_noop"
SIZE = 10_000
WRK_MARK = "WRK_JSON "
ERROR_COUNTS = (
    "connect_errors",
    "read_errors",
    "write_errors",
    "timeouts",
    "bad_status",
    "rpc_errors",
    "tool_errors",
)

# Counters live in each thread's Lua state; `done` runs in the main state and reads them back.
LUA = """
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("offset", counter * 7)
  table.insert(threads, thread)
end

function init(args)
  i = offset or 0
  bad_status, rpc_errors, tool_errors, answers = 0, 0, 0, 0
end

function request()
  i = i % #requests + 1
  return requests[i]
end

function response(status, headers, body)
  answers = answers + 1
  if status ~= 200 then
    bad_status = bad_status + 1
  elseif not body:find('"result"', 1, true) then
    rpc_errors = rpc_errors + 1
  elseif body:find('"isError":true', 1, true) or body:find('"isError": true', 1, true) then
    tool_errors = tool_errors + 1
  end
end

function done(summary, latency, requests_)
  local bad, rpc, tool, seen = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    bad = bad + t:get("bad_status")
    rpc = rpc + t:get("rpc_errors")
    tool = tool + t:get("tool_errors")
    seen = seen + t:get("answers")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"mean_us":%d,' ..
    '"max_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"status_errors":%d,"bad_status":%d,"rpc_errors":%d,"tool_errors":%d,"answers":%d}\\n',
    summary.requests, summary.duration, math.floor(latency:percentile(50)),
    math.floor(latency:percentile(99)), math.floor(latency.mean), latency.max,
    e.connect, e.read, e.write,
    e.timeout, e.status, bad, rpc, tool, seen))
end
"""


def lua_string(raw: bytes) -> str:
    """A Lua string literal holding these exact bytes (CR LF included)."""
    out = []
    for byte in raw:
        char = chr(byte)
        if char in '"\\' or not 32 <= byte < 127:
            out.append(f"\\{byte:03d}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def script_for(bench: Bench, scn: Scenario) -> str:
    """The Lua script for one scenario: one pre-encoded request per reader, taken in turn."""
    target = bench.targets[scn.server]
    if not target.modern:
        raise BenchError(f"{scn.key}: {scn.server} needs a session per connection; not for wrk")
    readers = len(bench.user_ids[scn.users])
    requests = []
    for i in range(readers):
        token = bench.token(scn.users, i, scn.server)
        endpoint = McpEndpoint(target.host, target.port, target.path, token, target.modern)
        requests.append(lua_string(endpoint.call_tool(scn.tool, scn.arguments)))
    return "requests = {\n" + ",\n".join(requests) + "\n}\n" + LUA


async def warm(bench: Bench, scn: Scenario) -> None:
    """One checked call per reader, so a cached read is warm for every request wrk sends."""
    for i in range(len(bench.user_ids[scn.users])):
        conn, make = await bench.open_session(scn, i)
        try:
            check_rpc(await conn.send(make()))
        finally:
            await conn.close()


async def run_wrk(
    wrk: str, script: Path, url: str, connections: int, duration: float
) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        wrk,
        "-t1",  # one C thread outpaces these servers; the cores go to the servers
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "30s",  # a slow answer at 64 connections is latency, not a dropped request
        "--latency",
        "-s",
        str(script),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    text = out.decode()
    lines = [line for line in text.splitlines() if line.startswith(WRK_MARK)]
    if proc.returncode != 0 or not lines:
        raise BenchError(f"wrk failed ({proc.returncode}): {err.decode()[-500:]} {text[-500:]}")
    result: dict[str, Any] = json.loads(lines[-1][len(WRK_MARK) :])
    return result


def cell_of(scn: Scenario, connections: int, got: dict[str, Any]) -> dict[str, Any]:
    """A wrk result in the shape of run.py's cells, so report.evaluate_targets reads it."""
    seconds = got["duration_us"] / 1e6
    errors = sum(got[k] for k in ERROR_COUNTS)
    return {
        "scenario": scn.key,
        "label": scn.label,
        "server": scn.server,
        "rows": SIZE,
        "concurrency": connections,
        "calls": got["requests"],
        "errors": errors,
        "seconds": seconds,
        "throughput": got["requests"] / seconds if seconds else float("nan"),
        "p50_ms": got["p50_us"] / 1000,
        "p99_ms": got["p99_us"] / 1000,
        "mean_ms": got["mean_us"] / 1000,
        "max_ms": got["max_us"] / 1000,
        "rss_max_mb": {},
        "wrk": got,
    }


def table(cells: list[dict[str, Any]], scenarios: list[Scenario], conns: list[int]) -> str:
    head = " | ".join(f"{n} conn{'s' if n > 1 else ''}" for n in conns)
    lines = [
        "calls/s (p50 / p99 ms; slowest call ms), errors",
        "",
        f"| scenario | {head} |",
        "| --- |" + " ---: |" * len(conns),
    ]
    for scn in scenarios:
        parts = []
        for n in conns:
            c = next(x for x in cells if x["scenario"] == scn.key and x["concurrency"] == n)
            err = f", **{c['errors']} errors**" if c["errors"] else ""
            parts.append(
                f"{c['throughput']:,.0f}/s ({c['p50_ms']:.2f} / {c['p99_ms']:.2f}; "
                f"{c['max_ms']:,.0f}){err}"
            )
        lines.append(f"| {scn.label} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def targets_table(cells: list[dict[str, Any]]) -> str:
    lines = ["| target | measured | limit | met |", "| --- | --- | --- | --- |"]
    for t in report.evaluate_targets({"cells": cells}):
        met = "reported" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {t['measured']} | {t['limit']} | {met} |")
    return "\n".join(lines)


async def drive(args: argparse.Namespace, stack: Stack, peer_python: Path) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed: apt-get install -y wrk")
    wanted = args.only.split(",")
    scenarios = [s for s in scenarios_for_10k() if s.key in wanted and s.users == READ_USERS]
    if len(scenarios) != len(wanted):
        raise BenchError(f"unknown or write scenario among {wanted}")
    conns = [int(c) for c in args.connections.split(",")]
    cells: list[dict[str, Any]] = []
    async with started_bench(args, stack, peer_python) as bench:
        if args.pin:  # wrk is started from this process, so it runs on the client's CPU too
            pinning.pin_servers_and_client([c.process.pid for c in bench.servers.values()], stack)
        await grow(bench, SIZE)
        workdir = Path(tempfile.mkdtemp(prefix="taskgate-wrk-"))
        try:
            scripts = {}
            for scn in scenarios:
                await warm(bench, scn)
                scripts[scn.key] = workdir / f"{scn.key}.lua"
                scripts[scn.key].write_text(script_for(bench, scn))
            load_before = load_average()
            # Every scenario at one connection count before the next, as in run.py.
            for n in conns:
                for scn in scenarios:
                    target = bench.targets[scn.server]
                    url = f"http://{target.host}:{target.port}{target.path}"
                    got = await run_wrk(wrk, scripts[scn.key], url, n, args.duration)
                    cell = cell_of(scn, n, got)
                    cells.append(cell)
                    say(
                        f"wrk {n:>2} conns  {scn.key:<15} {cell['throughput']:8.1f}/s  "
                        f"p50 {cell['p50_ms']:7.2f}  p99 {cell['p99_ms']:7.2f} ms  "
                        f"errors {cell['errors']}"
                    )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return {
        "cells": cells,
        "load_before": load_before,
        "load_after": load_average(),
        "scenarios": scenarios,
        "connections": conns,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.bench.wrk",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="3 s cells at 16 and 64 connections")
    p.add_argument("--connections", help="wrk connections per cell (default 1,16,64)")
    p.add_argument("--duration", type=float, help="seconds per cell (default 10)")
    p.add_argument("--only", default=DEFAULT_SCENARIOS, help="scenario keys (read, stateless)")
    p.add_argument("--cache-ttl", type=float, default=300.0)
    p.add_argument("--peer-venv", type=Path, default=HERE / ".peer-venv")
    p.add_argument("--json", type=Path, help="also write the cells and targets to this file")
    p.add_argument(
        "--pin", action="store_true", help=f"taskset: {pinning.described()} (needs 2 cores)"
    )
    args = p.parse_args(argv)
    args.connections = args.connections or ("16,64" if args.quick else "1,16,64")
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.ab = False  # started_bench's option: no asyncio + h11 gateway here
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    peer_python = ensure_peer_venv(args.peer_venv.resolve())  # started_bench starts every peer
    install_uvloop()
    with bench_stack(args) as stack:
        data = asyncio.run(drive(args, stack, peer_python))
    cells = data["cells"]
    pinned = f", {pinning.described()}" if args.pin else ""
    print(
        f"wrk, {args.duration:g} s per cell{pinned}, load average before {data['load_before']}, "
        f"after {data['load_after']}\n"
    )
    print(table(cells, data["scenarios"], data["connections"]))
    print()
    print(targets_table(cells))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "cells": cells,
                    "targets": report.evaluate_targets({"cells": cells}),
                    "load_before": data["load_before"],
                    "load_after": data["load_after"],
                },
                indent=2,
            )
            + "\n"
        )
    if any(c["errors"] for c in cells):
        sys.exit("wrk: some answers were errors (see the table)")


if __name__ == "__main__":
    main()
