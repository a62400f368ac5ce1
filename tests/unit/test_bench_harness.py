"""The benchmark harness's own logic: what wrk sends, and how a run's cells become targets."""

from __future__ import annotations

import re
from typing import Any

from tests.bench import report
from tests.bench.rawclient import McpEndpoint
from tests.bench.wrk import lua_string


def _lua_bytes(literal: str) -> bytes:
    assert literal[0] == literal[-1] == '"'
    body = re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1))), literal[1:-1])
    return body.encode("latin-1")


def test_wrk_sends_the_raw_clients_exact_request_bytes() -> None:
    endpoint = McpEndpoint("127.0.0.1", 8001, "/mcp", 'tok"en\\', modern=True)
    raw = endpoint.call_tool("list_tasks", {"status": "pending"})
    literal = lua_string(raw)
    # No raw line breaks: a Lua string would turn CR LF into LF.
    assert "\r" not in literal and "\n" not in literal
    assert _lua_bytes(literal) == raw


def _cell(scenario: str, n: int, throughput: float, p50: float, p99: float) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "label": scenario,
        "server": "gateway",
        "rows": report.SMALL,
        "concurrency": n,
        "throughput": throughput,
        "p50_ms": p50,
        "p99_ms": p99,
        "rss_max_mb": {},
    }


def _met(cells: list[dict[str, Any]]) -> dict[str, bool | None]:
    return {t["target"]: t["met"] for t in report.evaluate_targets({"cells": cells})}


def test_issue_12_targets_are_ratios_of_cells_from_one_run() -> None:
    noop = 1000.0
    good = [
        _cell("noop", 16, noop, 10.0, 20.0),
        _cell("cached", 16, noop * 0.95, 12.0, 30.0),
        _cell("sdk_noop", 16, noop * 0.45, 30.0, 60.0),
        _cell("fastmcp_cached", 16, noop * 0.5, 25.0, 50.0),
        _cell("noop", 64, noop, 40.0, 100.0),
        _cell("cached", 64, noop * 0.95, 45.0, 120.0),
        _cell("fastmcp_cached", 64, noop * 0.5, 90.0, 150.0),
    ]
    met = _met(good)
    assert len(met) == 7
    assert all(v is True for k, v in met.items() if "FastMCP cached peer's, 16" not in k)
    assert [v for k, v in met.items() if "FastMCP cached peer's, 16" in k] == [None]

    bad = [dict(c) for c in good]
    for c in bad:
        if c["scenario"] == "cached":
            c["throughput"] = noop * 0.85  # below 0.90 of the no-op, and below 2x the SDK's
            c["p50_ms"] *= 1.2  # 14.4 / 10 > 1.3
            c["p99_ms"] = c["p50_ms"] * 3.5  # p99/p50 > 3, and worse than FastMCP's at 64
    met = _met(bad)
    failed = {k for k, v in met.items() if v is False}
    assert len(failed) == 5  # all but the no-op's own p99/p50 and the reported ratio
    assert met["p99 / p50 at 64 sessions, noop"] is True
