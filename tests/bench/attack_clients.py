"""The attackers of tests/bench/attacks.py: raw sockets that never finish a request (their home is
tests/support/socket_floods.py, shared with the security tests), and noisy tenants, each in a
process of its own so that their work never delays the measured client.

Every reply an attacker counts is read back and classified: an answer, a refusal (a 429 or a
`rate_limited` envelope, a 503 or a closed socket), or something else.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.support.raw_agents import ACCEPT, call_tool, new_http
from tests.support.socket_floods import (
    SocketPool,
    connection_flood,
    partial_body,
    partial_head,
)

__all__ = ["SocketPool", "connection_flood", "noisy_tenant", "partial_body", "partial_head"]

RATE_LIMITED_RPC_CODE = -32029


# -- noisy tenants ------------------------------------------------------------------------


async def tools_list_outcome(http: httpx.AsyncClient, url: str, token: str) -> str:
    """ "ok" for a listed set of tools, "refused" for the rate_limited error, else "other"."""
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": ACCEPT, "Authorization": f"Bearer {token}"}
    try:
        reply = await http.post(url, json=rpc, headers=headers)
    except httpx.TransportError:
        return "other"
    if reply.status_code != 200:
        return "other"
    answer = reply.json()
    if answer.get("result", {}).get("tools"):
        return "ok"
    error = answer.get("error", {})
    envelope = error.get("data") or {}
    if error.get("code") == RATE_LIMITED_RPC_CODE and envelope.get("error_code") == "rate_limited":
        return "refused"
    return "other"


async def rest_list_outcome(http: httpx.AsyncClient, url: str, token: str) -> str:
    """GET /api/v1/tasks: "ok" for a list, "refused" for 429 with the envelope, else "other"."""
    try:
        reply = await http.get(url, headers={"Authorization": f"Bearer {token}"})
    except httpx.TransportError:
        return "other"
    if reply.status_code == 200 and isinstance(reply.json().get("tasks"), list):
        return "ok"
    if reply.status_code == 429 and reply.json().get("error_code") == "rate_limited":
        return "refused"
    return "other"


async def large_page_outcome(http: httpx.AsyncClient, url: str, token: str, n: int) -> str:
    # Over CACHE_MAX_ENTRY_BYTES, so never cached; the statuses vary the query.
    args = {"limit": 200, "status": ("all", "pending", "completed")[n % 3]}
    outcome = await call_tool(http, url, token, "list_tasks", args)
    if outcome.ok:
        return "ok"
    return "refused" if outcome.error_code == "rate_limited" else "other"


def noisy_tenant(kind: str, url: str, token: str, concurrency: int, stop: Any, counts: Any) -> None:
    """One tenant's flood of `kind` ("large pages", "tools/list", "rest"), `concurrency` calls
    at a time until `stop` is set; `counts` (an Array) gets [ok, refused, other]."""
    asyncio.run(_noisy(kind, url, token, concurrency, stop, counts))


async def _noisy(kind: str, url: str, token: str, concurrency: int, stop: Any, counts: Any) -> None:
    slot = {"ok": 0, "refused": 1, "other": 2}
    async with new_http(concurrency) as http:

        async def one_caller(n: int) -> None:
            while not stop.is_set():
                if kind == "large pages":
                    outcome = await large_page_outcome(http, url, token, n)
                    n += 1
                elif kind == "tools/list":
                    outcome = await tools_list_outcome(http, url, token)
                else:
                    outcome = await rest_list_outcome(http, url, token)
                counts[slot[outcome]] += 1  # a refused caller tries again at once

        await asyncio.gather(*(one_caller(n) for n in range(concurrency)))
