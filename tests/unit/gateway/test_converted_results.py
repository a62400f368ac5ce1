"""Read results are converted to MCP results once per returned object, and only read results."""

from __future__ import annotations

from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp.types import ToolAnnotations
from pydantic import BaseModel

from gateway.results import ConvertedResults


class Page(BaseModel):
    items: list[int]


CACHED: dict[str, Any] = {"items": [1, 2, 3]}


def server_with_tools() -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer(name="t")

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True), structured_output=True)
    async def cached_read() -> Page:
        return CACHED  # type: ignore[return-value]

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True), structured_output=True)
    async def fresh_read() -> Page:
        return {"items": [4]}  # type: ignore[return-value]

    @server.tool(structured_output=True)
    async def write() -> Page:
        return CACHED  # type: ignore[return-value]

    return server


def count_conversions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = FuncMetadata.convert_result

    def counting(self: FuncMetadata, result: Any) -> Any:
        calls.append(1)
        return real(self, result)

    monkeypatch.setattr(FuncMetadata, "convert_result", counting)
    return calls


async def call(memo: ConvertedResults, server: MCPServer[Any], name: str) -> Any:
    tool = server._tool_manager.get_tool(name)
    assert tool is not None
    return await memo.run(tool, {}, Context(mcp_server=server))


async def test_the_same_cached_page_is_converted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    server = server_with_tools()
    calls = count_conversions(monkeypatch)
    memo = ConvertedResults()

    first = await call(memo, server, "cached_read")
    second = await call(memo, server, "cached_read")

    assert second is first
    assert first.structured_content == {"items": [1, 2, 3]}
    assert len(calls) == 1


async def test_a_new_object_is_converted_again(monkeypatch: pytest.MonkeyPatch) -> None:
    server = server_with_tools()
    calls = count_conversions(monkeypatch)
    memo = ConvertedResults()

    await call(memo, server, "fresh_read")
    await call(memo, server, "fresh_read")

    assert len(calls) == 2


async def test_write_results_are_never_memoised(monkeypatch: pytest.MonkeyPatch) -> None:
    server = server_with_tools()
    calls = count_conversions(monkeypatch)
    memo = ConvertedResults()

    await call(memo, server, "write")
    await call(memo, server, "write")

    assert len(calls) == 2


async def test_the_memo_stays_bounded() -> None:
    server = server_with_tools()
    memo = ConvertedResults(size=4)
    for _ in range(10):
        await call(memo, server, "fresh_read")
    assert len(memo._memo) == 4
