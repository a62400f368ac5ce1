"""Write tools: forwarded to the backend, which owns every business rule."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

from gateway.backend_client import BackendReply
from gateway.runtime import RuntimeRef
from shared.schemas import DESCRIPTION_MAX, TITLE_MAX, TaskOut

TaskId = Annotated[int, Field(ge=1, le=2**63 - 1, description="The task's id.")]
Title = Annotated[
    str, Field(min_length=1, max_length=TITLE_MAX, description="Short title, 1 to 200 characters.")
]
Description = Annotated[
    str | None, Field(max_length=DESCRIPTION_MAX, description="Optional details, up to 1000 chars.")
]


def register_write_tools(server: MCPServer, ref: RuntimeRef) -> None:
    async def forward(
        method: str, path: str, json: Any = None, headers: dict[str, str] | None = None
    ) -> BackendReply:
        rt = ref.get()
        caller = rt.identity.caller()
        request_headers = {"X-Request-ID": uuid.uuid4().hex, **(headers or {})}
        reply = await rt.backend.request(
            method, path, caller.auth, json=json, headers=request_headers
        )
        if reply.commit_lsn:
            # The caller's next reads wait for this position on the replica.
            await rt.reader.note_write(caller.user_id, reply.commit_lsn)
        return reply

    @server.tool(
        annotations=ToolAnnotations(destructiveHint=False, idempotentHint=False),
        structured_output=True,
    )
    async def create_task(title: Title, description: Description = None) -> TaskOut:
        """Create a task for yourself. Returns the new task; list_tasks shows it at once."""
        body = {"title": title, "description": description}
        # One key per tool call: if the backend is slow and the HTTP call is retried,
        # the backend still creates the task only once.
        reply = await forward(
            "POST", "/tasks", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
        )
        return reply.body  # type: ignore[no-any-return]
