"""Read tools: answered by the read model (cache, then replica), never by the backend."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from gateway.identity import identified
from gateway.runtime import RuntimeRef
from gateway.tools.args import TaskIdArg
from shared.rules import CURSOR_MAX, LIMIT_DEFAULT, LIMIT_MAX, LIMIT_MIN, PageLimit, Status
from shared.schemas import TaskOut, TaskPage, UserStats
from shared.settings import Settings


def read_only(title: str) -> ToolAnnotations:
    # Each tool reads only the caller's own tasks in the task service: a closed world.
    return ToolAnnotations(title=title, readOnlyHint=True, idempotentHint=True, openWorldHint=False)


# A read tool's value: the JSON form of its output model, as the read model's cache holds it.
JsonObject = Mapping[str, Any]
F = TypeVar("F", bound=Callable[..., Awaitable[JsonObject]])


def answers(model: type[BaseModel]) -> Callable[[F], F]:
    """The tool returns the JSON form of `model`; the SDK publishes `model` as its output schema
    and validates the value against it, once. (Building the model in the tool would convert each
    cached read twice, and the fast path converts the cached JSON itself, the same way.)"""

    def publish(tool: F) -> F:
        signature = inspect.signature(tool, eval_str=True)
        vars(tool)["__signature__"] = signature.replace(return_annotation=model)
        return tool

    return publish


def register_read_tools(server: MCPServer, settings: Settings, ref: RuntimeRef) -> None:
    with_identity = identified(settings)

    @server.tool(annotations=read_only("List your tasks"), structured_output=True)
    @answers(TaskPage)
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
    ) -> JsonObject:
        """List your tasks, newest first, one page at a time.

        To get the next page, call again with the same status and the returned next_cursor; it is
        null on the last page. A task you just created or changed always shows up here.
        """
        rt = ref.get()
        caller = await rt.identity.caller()
        return await rt.reader.list_tasks(caller.user_id, status, limit, cursor)

    @server.tool(annotations=read_only("Get a task"), structured_output=True)
    @answers(TaskOut)
    @with_identity
    async def get_task(task_id: TaskIdArg) -> JsonObject:
        """Get one of your tasks by id. Answers not_found for an id that is not one of yours."""
        rt = ref.get()
        caller = await rt.identity.caller()
        return await rt.reader.get_task(caller.user_id, task_id)

    @server.tool(annotations=read_only("Count your tasks"), structured_output=True)
    @answers(UserStats)
    @with_identity
    async def get_user_stats() -> JsonObject:
        """Count your tasks: total, completed and pending."""
        rt = ref.get()
        caller = await rt.identity.caller()
        return await rt.reader.get_user_stats(caller.user_id)
