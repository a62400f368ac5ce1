"""Tool results and schemas sized for an agent: compact JSON text, closed input schemas.

The SDK writes a structured result's text block as indented JSON of the tool's raw return value,
so the model reads the same data twice, the text one a third larger, with its timestamps spelled
otherwise ("+00:00" in the text, "Z" in the structured content). Here the text block is the
structured content itself, as compact JSON: one spelling, the fewest bytes.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp.types import CallToolResult, TextContent


class CompactResults(FuncMetadata):
    """A tool's metadata whose results carry their structured content as compact JSON text."""

    def convert_result(self, result: Any) -> Any:
        converted = super().convert_result(result)
        if not isinstance(converted, CallToolResult) or converted.structured_content is None:
            return converted
        text = pydantic_core.to_json(converted.structured_content).decode()
        return converted.model_copy(update={"content": [TextContent(type="text", text=text)]})


def size_for_agents(tool: Tool) -> None:
    """Compact results, and an input schema that says what the gateway enforces: no unknown
    arguments (the call edge refuses them by name)."""
    tool.fn_metadata = CompactResults.model_construct(
        **{name: getattr(tool.fn_metadata, name) for name in FuncMetadata.model_fields}
    )
    tool.parameters["additionalProperties"] = False
