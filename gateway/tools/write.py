"""Write tools: forwarded to the backend, which owns every business rule."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import MISSING, BaseModel, Field

from gateway.backend_client import WriteReply
from gateway.identity import identified
from gateway.runtime import Runtime, RuntimeRef
from gateway.tools.args import TaskIdArg
from shared.rules import DESCRIPTION_MAX, TITLE_MAX
from shared.schemas import TaskCreate, TaskOut, TaskUpdate
from shared.settings import Settings

T = TypeVar("T")

Title = Annotated[
    str,
    Field(
        min_length=1,
        max_length=TITLE_MAX,
        description=f"Short title, 1 to {TITLE_MAX} characters; surrounding spaces are trimmed.",
    ),
]
Description = Annotated[
    str | None,
    Field(max_length=DESCRIPTION_MAX, description=f"Details, up to {DESCRIPTION_MAX} characters."),
]

# Each tool changes only the caller's own tasks in the task service: a closed world.
CREATE = ToolAnnotations(
    title="Create a task", readOnlyHint=False, destructiveHint=False, idempotentHint=False,
    openWorldHint=False,
)  # fmt: skip
UPDATE = ToolAnnotations(
    title="Update a task", readOnlyHint=False, destructiveHint=False, idempotentHint=True,
    openWorldHint=False,
)  # fmt: skip
COMPLETE = ToolAnnotations(
    title="Complete a task", readOnlyHint=False, destructiveHint=False, idempotentHint=True,
    openWorldHint=False,
)  # fmt: skip
DELETE = ToolAnnotations(
    title="Delete a task", readOnlyHint=False, destructiveHint=True, idempotentHint=True,
    openWorldHint=False,
)  # fmt: skip


class TaskDeleted(BaseModel):
    task_id: int = Field(description="The id of the task that no longer exists.")
    deleted: Literal[True] = True


async def _noted(rt: Runtime, user_id: int, written: WriteReply[T]) -> T:
    """The written value, once the caller's next reads are set to wait for the write."""
    if written.commit_lsn:
        await rt.reader.note_write(user_id, written.commit_lsn)
    return written.value


def register_write_tools(server: MCPServer, settings: Settings, ref: RuntimeRef) -> None:
    # The arguments go to the backend as given: it owns every rule and answers in the envelope.
    with_identity = identified(settings)

    @server.tool(annotations=CREATE, structured_output=True)
    @with_identity
    async def create_task(title: Title, description: Description = None) -> TaskOut:
        """Create a new task for yourself and return it (with its id).

        Every call creates one more task, so call it once per task you want. If it fails with
        backend_unavailable, use list_tasks to check whether the task exists before calling again.
        """
        rt = ref.get()
        caller = await rt.identity.caller()
        task = TaskCreate.model_construct(title=title, description=description)
        # One key per tool call: the gateway's own retry after a timeout reuses it, so the
        # backend creates the task at most once.
        written = await rt.backend.create_task(caller.auth, task, uuid.uuid4().hex)
        return await _noted(rt, caller.user_id, written)

    @server.tool(annotations=UPDATE, structured_output=True)
    @with_identity
    async def update_task(
        task_id: TaskIdArg,
        title: Annotated[
            Title | None, Field(description="New title; omit to keep the current one.")
        ] = None,
        description: Annotated[
            Description,
            Field(description='New details; omit to keep them, or pass "" to remove them.'),
        ] = None,
        completed: Annotated[
            bool | None, Field(description="true marks the task done, false reopens it.")
        ] = None,
    ) -> TaskOut:
        """Change one of your tasks: its title, its details, and/or whether it is completed.

        Pass task_id and at least one field to change; fields you omit stay as they are. Returns
        the task as it is now. Answers not_found for an id that is not one of your tasks.
        """
        rt = ref.get()
        caller = await rt.identity.caller()
        # An omitted field (None) is MISSING: left out of the request, so it stays as it is.
        changes = TaskUpdate.model_construct(
            title=MISSING if title is None else title,
            description=MISSING if description is None else description,
            completed=MISSING if completed is None else completed,
        )
        written = await rt.backend.update_task(caller.auth, task_id, changes)
        return await _noted(rt, caller.user_id, written)

    @server.tool(annotations=COMPLETE, structured_output=True)
    @with_identity
    async def complete_task(task_id: TaskIdArg) -> TaskOut:
        """Mark one of your tasks as completed and return it. Completing it again changes nothing.

        Answers not_found for an id that is not one of your tasks.
        """
        rt = ref.get()
        caller = await rt.identity.caller()
        written = await rt.backend.complete_task(caller.auth, task_id)
        return await _noted(rt, caller.user_id, written)

    @server.tool(annotations=DELETE, structured_output=True)
    @with_identity
    async def delete_task(task_id: TaskIdArg) -> TaskDeleted:
        """Delete one of your tasks for good. This cannot be undone.

        Answers not_found for an id that is not one of your tasks, or one already deleted.
        """
        rt = ref.get()
        caller = await rt.identity.caller()
        await _noted(rt, caller.user_id, await rt.backend.delete_task(caller.auth, task_id))
        return TaskDeleted(task_id=task_id)
