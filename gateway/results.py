"""Tool results converted once per returned object, for the read tools' cache hits.

A cached read hands back the very page object it cached, until that entry expires. The SDK would
convert it again on every call: validate it against the tool's output schema and dump it as
indented JSON text. Converting once per object was the largest piece of a cached `list_tasks`
call's CPU beyond the MCP transport itself, in the benchmark's profile (tests/bench).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool

# Bounded: an uncached read returns a new object each call, and would only fill the memo.
MEMO_SIZE = 512


class ConvertedResults:
    def __init__(self, size: int = MEMO_SIZE) -> None:
        self._size = size
        # id(object) -> (object, result). Holding the object keeps its id from being reused.
        self._memo: OrderedDict[int, tuple[Any, Any]] = OrderedDict()

    async def run(self, tool: Tool, arguments: dict[str, Any], context: Context[Any, Any]) -> Any:
        """Tool.run(convert_result=True), with the conversion memoised for read-only tools."""
        if tool.annotations is None or not tool.annotations.read_only_hint:
            return await tool.run(arguments, context, convert_result=True)
        raw = await tool.run(arguments, context, convert_result=False)
        if not isinstance(raw, dict | list):
            return self._convert(tool, raw)
        hit = self._memo.get(id(raw))
        if hit is not None and hit[0] is raw:
            return hit[1]
        result = self._convert(tool, raw)
        self._memo[id(raw)] = (raw, result)
        if len(self._memo) > self._size:
            self._memo.popitem(last=False)
        return result

    @staticmethod
    def _convert(tool: Tool, raw: Any) -> Any:
        try:
            return tool.fn_metadata.convert_result(raw)
        except ToolError:
            raise
        except Exception as exc:  # as Tool.run reports a failed conversion
            raise UnexpectedToolError(f"Error executing tool {tool.name}") from exc
