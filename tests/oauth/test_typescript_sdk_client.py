"""The official MCP TypeScript SDK's OAuth client (npm @modelcontextprotocol/sdk, pinned by
tests/oauth_ts/package-lock.json and installed there with `npm ci`) logs in and refreshes
against a running backend and gateway."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.npm import npm_ci
from tests.support.oauth import ACCESS_TTL_SECONDS, OAuthStack

HERE = Path(__file__).parent.parent / "oauth_ts"


@pytest.fixture(scope="session")
def node() -> str:
    node = shutil.which("node")
    assert node, "node (Node 20 or later) is needed for the TypeScript SDK test"
    npm_ci(HERE, HERE / "node_modules" / "@modelcontextprotocol" / "sdk")
    return node


def fast_path_answers(metrics_url: str) -> float:
    text = httpx.get(metrics_url, timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("taskgate_fast_path_answers_total{")
    )


def test_the_typescript_sdk_client_logs_in_calls_tools_and_refreshes(
    oauth_stack: OAuthStack, node: str
) -> None:
    agent = oauth_stack.agent()
    metrics_url = oauth_stack.mcp_url.removesuffix("/mcp") + "/metrics"
    before = fast_path_answers(metrics_url)
    run = subprocess.run(
        [node, "client.mjs", oauth_stack.mcp_url, agent.email, agent.password],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "WAIT_FOR_EXPIRY_MS": str((ACCESS_TTL_SECONDS + 1) * 1000)},
    )
    assert run.returncode == 0, run.stderr
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert outcome["created"]["user_id"] == agent.id
    assert outcome["titles"] == ["from the TS SDK"]
    # The repeat was a cache hit, answered in front of the Python SDK, and read the same.
    assert outcome["listedAgainSame"]
    assert fast_path_answers(metrics_url) > before
    assert json.loads(outcome["listedText"])["tasks"][0]["title"] == "from the TS SDK"
    assert outcome["stats"] == {"total": 1, "completed": 0, "pending": 1}
    assert outcome["hadRefresh"] and outcome["refreshed"]
    assert outcome["logins"] == 1  # the second session refreshed; the person did not log in again
