"""Bytes of one 50-task `list_tasks` reply, as the gateway sends it (issue 12, part 4).

    uv run python -m tests.bench.page_bytes

The page is shaped like the benchmark's seeded rows. It goes through the registered tool's own
result conversion and the reply encoder the fast path uses (the SDK's shaping and writer, equal
to the SDK path's reply byte for byte: tests/integration/gateway/test_fast_path_differential.py),
and, beside it, through the SDK's default conversion (indented JSON text of the raw value), the
"before" of gateway/tool_results.py.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp.types import CallToolResult, TextContent

from gateway.encoded_results import ReplyEncoder
from gateway.sdk_fence import body_of
from gateway.server import build_server
from shared.settings import Settings

TASKS = 50
VERSIONS = ("2026-07-28", "2025-11-25")


def seeded_page(tasks: int = TASKS) -> dict[str, Any]:
    now = datetime(2026, 12, 4, 12, 0, 0, 123456, tzinfo=UTC)
    rows = [
        {
            "id": g,
            "user_id": 7,
            "title": f"task {g}",
            "description": f"seeded by the benchmark: row {g} of the task table",
            "completed": g % 3 == 0,
            "created_at": (now - timedelta(seconds=g)).isoformat(),
            "updated_at": (now - timedelta(seconds=g)).isoformat(),
        }
        for g in range(100_000, 100_000 + tasks)
    ]
    return {"tasks": rows, "next_cursor": "c" * 60}


async def measure() -> dict[str, dict[str, int]]:
    server, _ = build_server(Settings(_env_file=None))
    tool = server._tool_manager.get_tool("list_tasks")
    assert tool is not None
    encoder = ReplyEncoder.of(server, max_bytes=1 << 20)
    conversions = {
        "SDK default": FuncMetadata.convert_result(tool.fn_metadata, seeded_page()),
        "gateway": tool.fn_metadata.convert_result(seeded_page()),
    }
    sizes: dict[str, dict[str, int]] = {}
    for name, result in conversions.items():
        assert isinstance(result, CallToolResult) and isinstance(result.content[0], TextContent)
        structured = json.dumps(result.structured_content, separators=(",", ":")).encode()
        row = {"text block": len(result.content[0].text.encode()), "structured": len(structured)}
        for version in VERSIONS:
            reply = await encoder.encode(result, version)
            row[f"reply, {version}"] = len(body_of(reply, version, 1))
        sizes[name] = row
    return sizes


def main() -> None:
    sizes = asyncio.run(measure())
    columns = list(next(iter(sizes.values())))
    print(f"{TASKS}-task page, bytes | " + " | ".join(columns))
    for name, row in sizes.items():
        print(f"{name} | " + " | ".join(f"{row[c]:,}" for c in columns))


if __name__ == "__main__":
    main()
