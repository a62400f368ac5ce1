"""Agents for fault and load tests: raw JSON-RPC tool calls on the gateway's stateless
streamable HTTP endpoint (no session to set up), each outcome recorded with its latency."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

ACCEPT = "application/json, text/event-stream"


@dataclass(frozen=True)
class Outcome:
    url: str
    tool: str
    arguments: dict[str, Any]
    started: float  # time.monotonic()
    latency: float
    http_status: int  # 0: no HTTP answer at all
    error_code: str | None = None  # the envelope's, for an isError result
    body: Any = None  # structuredContent of a success

    @property
    def ok(self) -> bool:
        return self.http_status == 200 and self.error_code is None

    @property
    def ended(self) -> float:
        return self.started + self.latency


@dataclass
class Agent:
    user_id: int
    token: str
    outcomes: list[Outcome] = field(default_factory=list)

    async def call(
        self, http: httpx.AsyncClient, url: str, tool: str, arguments: dict[str, Any]
    ) -> Outcome:
        outcome = await call_tool(http, url, self.token, tool, arguments)
        self.outcomes.append(outcome)
        return outcome


async def call_tool(
    http: httpx.AsyncClient, url: str, token: str, tool: str, arguments: dict[str, Any]
) -> Outcome:
    rpc = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    headers = {"Accept": ACCEPT, "Authorization": f"Bearer {token}"}
    started = time.monotonic()
    try:
        reply = await http.post(url, json=rpc, headers=headers)
    except httpx.TransportError:
        return Outcome(url, tool, arguments, started, time.monotonic() - started, 0, "no_answer")
    latency = time.monotonic() - started
    if reply.status_code != 200:
        return Outcome(url, tool, arguments, started, latency, reply.status_code, "http_error")
    result = reply.json()["result"]
    if result.get("isError"):
        text = result["content"][0]["text"]
        assert "Traceback" not in text, text
        envelope = json.loads(text)
        assert envelope["status"] == "error", envelope
        return Outcome(
            url, tool, arguments, started, latency, 200, envelope["error_code"], envelope
        )
    return Outcome(url, tool, arguments, started, latency, 200, None, result["structuredContent"])


def new_http(connections: int = 128) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(timeout=60, limits=limits)
