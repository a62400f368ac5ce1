"""Read tools: answered by the read model (cache, then replica), never by the backend."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

from gateway.identity import identified
from gateway.runtime import RuntimeRef
from gateway.tools.args import TaskIdArg
from shared.rules import CURSOR_MAX, LIMIT_DEFAULT, LIMIT_MAX, LIMIT_MIN, PageLimit, Status
from shared.schemas import TaskOut, TaskPage, UserStats
from shared.settings import Settings

READ_ONLY = ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False)


def register_read_tools(server: MCPServer, settings: Settings, ref: RuntimeRef) -> None:
    # The reader answers JSON-ready dicts (what its cache holds). Validating them here is the
    # validation the SDK would do on a dict; on a model it checks the type and dumps it.
    with_identity = identified(settings)

    @server.tool(annotations=READ_ONLY, structured_output=True)
    @with_identity
    async def list_tasks(
        status: Annotated[
            Status, Field(description="Which tasks: 'all' (default), 'pending' or 'completed'.")
        ] = "all",
        limit: Annotated[
            PageLimit,
            Field(description=f"How many tasks per page, {LIMIT_MIN} to {LIMIT_MAX}."),
        ] = LIMIT_DEFAULT,
        cursor: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=CURSOR_MAX,
                description="next_cursor from the previous page; omit for the first page.",
            ),
        ] = None,
    ) -> TaskPage:
        """List your tasks, newest first, one page at a time.

        To get the next page, call again with the same status and the returned next_cursor; it is
        null on the last page. A task you just created or changed always shows up here.
        """
        rt = ref.get()
        caller = await rt.identity.caller()
        page = await rt.reader.list_tasks(caller.user_id, status, limit, cursor)
        return TaskPage.model_validate(page)

    @server.tool(annotations=READ_ONLY, structured_output=True)
    @with_identity
    async def get_task(task_id: TaskIdArg) -> TaskOut:
        """Get one of your tasks by id. Answers not_found for an id that is not one of yours."""
        rt = ref.get()
        caller = await rt.identity.caller()
        return TaskOut.model_validate(await rt.reader.get_task(caller.user_id, task_id))

    @server.tool(annotations=READ_ONLY, structured_output=True)
    @with_identity
    async def get_user_stats() -> UserStats:
        """Count your tasks: total, completed and pending."""
        rt = ref.get()
        caller = await rt.identity.caller()
        return UserStats.model_validate(await rt.reader.get_user_stats(caller.user_id))
