"""Read tools: answered by the read model (cache, then replica), never by the backend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

from gateway.identity import identified
from gateway.runtime import RuntimeRef
from gateway.tools.args import TaskIdArg
from readmodel.reader import CachedRead, TaskReader
from shared.rules import CURSOR_MAX, LIMIT_DEFAULT, LIMIT_MAX, LIMIT_MIN, PageLimit, Status
from shared.schemas import TaskOut, TaskPage, UserStats

READ_ONLY = ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False)


def register_read_tools(server: MCPServer, ref: RuntimeRef) -> None:
    with_identity = identified(ref.settings)

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
        page: Any = await rt.reader.list_tasks(caller.user_id, status, limit, cursor)
        return page  # type: ignore[no-any-return]

    @server.tool(annotations=READ_ONLY, structured_output=True)
    @with_identity
    async def get_task(task_id: TaskIdArg) -> TaskOut:
        """Get one of your tasks by id. Answers not_found for an id that is not one of yours."""
        rt = ref.get()
        caller = await rt.identity.caller()
        task: Any = await rt.reader.get_task(caller.user_id, task_id)
        return task  # type: ignore[no-any-return]

    @server.tool(annotations=READ_ONLY, structured_output=True)
    @with_identity
    async def get_user_stats() -> UserStats:
        """Count your tasks: total, completed and pending."""
        rt = ref.get()
        caller = await rt.identity.caller()
        stats: Any = await rt.reader.get_user_stats(caller.user_id)
        return stats  # type: ignore[no-any-return]


CachedReadOf = Callable[[TaskReader, int, Mapping[str, Any]], Awaitable[CachedRead | None]]


def cached_reads() -> dict[str, CachedReadOf]:
    """Each read tool's cache look-up (gateway.fast_path): the reader call its body makes, on
    the tool's validated arguments, for a hit alone. Beside the tools, so the two change together.
    """
    return {
        "list_tasks": lambda reader, user_id, args: reader.cached_list_tasks(
            user_id, args["status"], args["limit"], args["cursor"]
        ),
        "get_task": lambda reader, user_id, args: reader.cached_get_task(user_id, args["task_id"]),
        "get_user_stats": lambda reader, user_id, _args: reader.cached_user_stats(user_id),
    }
