"""The fast path's test corpus: requests as bytes, and what of a reply must equal the SDK's.

Shared by the differential and the hostile-tenant tests in tests/integration/gateway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tests.support.raw_http import RawReply, send_raw

MODERN = "2026-07-28"
HANDSHAKE = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
ACCEPT = "application/json, text/event-stream"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "differential", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
# Far above the corpus, so neither gateway refuses a call the other answers.
# The corpus opens a connection per request, from one address, far faster than a client would.
NO_LIMIT = {
    "RATE_LIMIT_PER_USER": "100000",
    "RATE_LIMIT_BURST": "1000000",
    "NEW_CONNECTIONS_PER_CLIENT_PER_SECOND": "0",
}


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    headers: list[tuple[str, str]]
    method: str = "POST"
    path: str | None = None
    host: str | None = None
    # True: the fast path must answer it (a valid call on a warm cache); False: the SDK must;
    # None: either (the SDK decides whether the request is valid).
    fast: bool | None = False


@dataclass
class Corpus:
    token: str
    cases: list[Case] = field(default_factory=list)

    def headers(self, version: str | None, tool: str | None = None) -> list[tuple[str, str]]:
        headers = [
            ("Authorization", f"Bearer {self.token}"),
            ("Accept", ACCEPT),
            ("Content-Type", "application/json"),
        ]
        if version is not None:
            headers.append(("MCP-Protocol-Version", version))
        if version == MODERN:
            headers.append(("Mcp-Method", "tools/call"))
            if tool is not None:
                headers.append(("Mcp-Name", tool))
        return headers

    def call(
        self,
        name: str,
        tool: str,
        arguments: Any = None,
        version: str | None = MODERN,
        rid: Any = 1,
        fast: bool | None = False,
        headers: list[tuple[str, str]] | None = None,
        **changes: Any,
    ) -> None:
        params: dict[str, Any] = {"name": tool}
        if arguments is not None:
            params["arguments"] = arguments
        if version == MODERN:
            params["_meta"] = META
        message = {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}
        body = json.dumps(message).encode()
        self.cases.append(
            Case(name, body, headers or self.headers(version, tool), fast=fast, **changes)
        )


def comparable(reply: RawReply, url: str) -> dict[str, Any]:
    """What must be equal between the two gateways: status, the headers that carry meaning,
    and the body (parsed when it is JSON). A redirect names its own gateway's address."""
    origin = url.removesuffix("/mcp")
    body: Any = reply.body
    if (reply.header("content-type") or "").startswith("application/json") and reply.body:
        body = (reply.json(), reply.body)  # parsed for the reader, and byte for byte
    return {
        "status": reply.status,
        "content-type": reply.header("content-type"),
        "allow": reply.header("allow"),
        "www-authenticate": reply.header("www-authenticate"),
        "location": (reply.header("location") or "").replace(origin, "<gateway>"),
        "body": body,
    }


def metric(text: str, name: str) -> dict[str, float]:
    """Samples of one metric family, by their label text."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, value = line.rsplit(" ", 1)
            found[labels.removeprefix(name)] = float(value)
    return found


async def scrape(url: str) -> str:
    reply = await send_raw(url, "GET", [], path="/metrics")
    return reply.body.decode()


def answered(metrics: str, cache: str | None = None) -> float:
    """Calls the fast path answered; with `cache` ("hit", "miss" or "write"), only those."""
    found = metric(metrics, "taskgate_fast_path_answers_total")
    return sum(v for k, v in found.items() if cache is None or f'cache="{cache}"' in k)
