"""Before/after of the gateway's hot-path fixes, each timed in-process on its own code path.

    uv run python -m tests.bench.micro

The end-to-end harness (tests.bench.run) measures whole calls; on a shared 2-core machine its
figures move with the load, so each fix is also timed here in isolation, old way against new.
"""

from __future__ import annotations

import asyncio
import os
import time
import timeit
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from gateway.auth import JwtVerifier
from gateway.server import build_server
from readmodel.cache import build_cache, decode_entry, encode_entry
from shared.settings import Settings
from shared.tokens import issue_token, verify_token

N = 5000


def per_call_us(fn: Callable[[], Any], n: int = N) -> float:
    return timeit.timeit(fn, number=n) / n * 1e6


def per_await_us(loop: asyncio.AbstractEventLoop, fn: Callable[[], Awaitable[Any]]) -> float:
    async def many() -> float:
        started = time.perf_counter()
        for _ in range(N):
            await fn()
        return (time.perf_counter() - started) / N * 1e6

    return loop.run_until_complete(many())


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.2f}")
    settings = Settings(_env_file=None, mcp_bench_tools=True, jwt_secret="x" * 40)
    loop = asyncio.new_event_loop()

    token = issue_token(settings, 7)
    verifier = JwtVerifier(settings)
    old = per_call_us(lambda: verify_token(settings, token))
    new = per_await_us(loop, lambda: verifier.verify_token(token))
    print(f"bearer check: verify the JWT {old:.1f} us -> remembered token {new:.1f} us")

    server, _ = build_server(settings)
    tool = server._tool_manager.get_tool("list_tasks")
    assert tool is not None
    now = datetime.now(UTC).isoformat()
    for size in (10, 50):
        page: dict[str, Any] = {
            "tasks": [
                {
                    "id": i,
                    "user_id": 1,
                    "title": f"task {i}",
                    "description": "seeded by the benchmark: row 1 of the task table",
                    "completed": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(size)
            ],
            "next_cursor": None,
        }

        stored = encode_entry(page)

        def hit(blob: bytes = stored) -> Any:
            # A cache hit since the byte bound: decode the stored JSON, then convert it. (The
            # memo of converted results that made this ~0.2 us went: it held whole pages by
            # count, and hits now decode a new object each time, so it would never hit.)
            assert tool is not None
            return tool.fn_metadata.convert_result(decode_entry(blob))

        took = per_call_us(hit, 1000)
        print(f"{size}-task cached page ({len(stored)} bytes) to an MCP result: {took:.1f} us")

    for timeout in (0.5, None):
        cache = build_cache("memory://")
        cache.timeout = timeout
        loop.run_until_complete(cache.set("k", {"a": 1}))
        took = per_await_us(loop, lambda: cache.get("k"))  # noqa: B023 (used at once)
        print(f"in-memory cache get, op timeout {timeout}: {took:.1f} us")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
