"""Write tools: forwarded to the backend, which owns every business rule."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from gateway.backend_client import BackendReply
from gateway.identity import identified
from gateway.runtime import RuntimeRef
from gateway.tools.args import TaskIdArg
from shared.rules import DESCRIPTION_MAX, TITLE_MAX
from shared.schemas import TaskOut

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


def register_write_tools(server: MCPServer, ref: RuntimeRef) -> None:
    with_identity = identified(ref.settings)

    async def forward(
        method: str, path: str, *, json: Any = None, idempotency_key: str | None = None
    ) -> BackendReply:
        rt = ref.get()
        caller = await rt.identity.caller()
        reply = await rt.backend.request(
            method, path, caller.auth, json=json, idempotency_key=idempotency_key
        )
        if reply.commit_lsn:
            # The caller's next reads wait for this position on the replica.
            await rt.reader.note_write(caller.user_id, reply.commit_lsn)
        return reply

    @server.tool(annotations=CREATE, structured_output=True)
    @with_identity
    async def create_task(title: Title, description: Description = None) -> TaskOut:
        """Create a new task for yourself and return it (with its id).

        Every call creates one more task, so call it once per task you want. If it fails with
        backend_unavailable, use list_tasks to check whether the task exists before calling again.
        """
        body = {"title": title, "description": description}
        # One key per tool call: the gateway's own retry after a timeout reuses it, so the
        # backend creates the task at most once.
        reply = await forward("POST", "/tasks", json=body, idempotency_key=uuid.uuid4().hex)
        return reply.body  # type: ignore[no-any-return]

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
        changes = {
            field: value
            for field, value in (
                ("title", title),
                ("description", description),
                ("completed", completed),
            )
            if value is not None
        }
        reply = await forward("PATCH", f"/tasks/{task_id}", json=changes)
        return reply.body  # type: ignore[no-any-return]

    @server.tool(annotations=COMPLETE, structured_output=True)
    @with_identity
    async def complete_task(task_id: TaskIdArg) -> TaskOut:
        """Mark one of your tasks as completed and return it. Completing it again changes nothing.

        Answers not_found for an id that is not one of your tasks.
        """
        reply = await forward("POST", f"/tasks/{task_id}/complete")
        return reply.body  # type: ignore[no-any-return]

    @server.tool(annotations=DELETE, structured_output=True)
    @with_identity
    async def delete_task(task_id: TaskIdArg) -> TaskDeleted:
        """Delete one of your tasks for good. This cannot be undone.

        Answers not_found for an id that is not one of your tasks, or one already deleted.
        """
        await forward("DELETE", f"/tasks/{task_id}")
        return TaskDeleted(task_id=task_id)
