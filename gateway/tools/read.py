"""Read tools: answered by the read model (cache, then replica), never by the backend."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

from gateway.runtime import RuntimeRef
from shared.schemas import Status, TaskOut, TaskPage, UserStats

READ_ONLY = ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False)

TaskId = Annotated[int, Field(ge=1, le=2**63 - 1, description="The task's id.")]


def register_read_tools(server: MCPServer, ref: RuntimeRef) -> None:
    @server.tool(annotations=READ_ONLY, structured_output=True)
    async def list_tasks(
        status: Annotated[
            Status, Field(description="Which tasks: 'all', 'pending' or 'completed'.")
        ] = "all",
        limit: Annotated[int, Field(ge=1, le=200, description="Page size, 1 to 200.")] = 50,
        cursor: Annotated[
            str | None,
            Field(max_length=200, description="next_cursor from the previous page, or omit."),
        ] = None,
    ) -> TaskPage:
        """List your tasks, newest first, one page at a time.

        Pass the returned next_cursor (with the same status) to get the next page; it is null on
        the last page. A task you just created or changed always shows up here.
        """
        rt = ref.get()
        caller = rt.identity.caller()
        page: Any = await rt.reader.list_tasks(caller.user_id, status, limit, cursor)
        return page  # type: ignore[no-any-return]

    @server.tool(annotations=READ_ONLY, structured_output=True)
    async def get_task(task_id: TaskId) -> TaskOut:
        """Get one of your tasks by id. Answers not_found for ids that are not yours."""
        rt = ref.get()
        caller = rt.identity.caller()
        task: Any = await rt.reader.get_task(caller.user_id, task_id)
        return task  # type: ignore[no-any-return]

    @server.tool(annotations=READ_ONLY, structured_output=True)
    async def get_user_stats() -> UserStats:
        """Count your tasks: total, completed and pending."""
        rt = ref.get()
        caller = rt.identity.caller()
        stats: Any = await rt.reader.get_user_stats(caller.user_id)
        return stats  # type: ignore[no-any-return]
