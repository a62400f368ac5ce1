"""The task service, described to the gateway with the public app spec API (taskgate.spec).

This is the spec the gateway serves when no --app is given: nothing in the gateway names a
task; every task tool comes from here and from the backend's OpenAPI document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field
from sqlalchemy import func, select

from shared.appspec import AppSpec, Rename, Writes
from shared.models import Base, Task
from shared.rules import STATUS_DEFAULT, Status, TaskId
from shared.schemas import TaskOut, UserStats

_COLUMNS = (
    Task.id,
    Task.user_id,
    Task.title,
    Task.description,
    Task.completed,
    Task.created_at,
    Task.updated_at,
)

TASKS = AppSpec(
    name="taskgate",
    openapi="task_service_openapi.json",  # the backend's document (a test keeps it current)
    owners={Task: Task.user_id},
    metadata=Base.metadata,
    root=str(Path(__file__).parent),
    instructions=(
        "Manage your own tasks. Write tools (create_task, update_task, complete_task, "
        "delete_task) change tasks; read tools (list_tasks, get_task, get_user_stats) read "
        "them, and always show your own latest writes. Failures come back as an error result "
        "whose text is a JSON envelope {status, error_code, message, details}."
    ),
    writes=Writes(
        include_tags=["tasks"],  # its writes; its reads are served from the replicas instead
        tools={
            "create_task_api_v1_tasks_post": Rename(
                name="create_task",
                title="Create a task",
                description=(
                    "Create a new task for yourself and return it (with its id).\n\n"
                    "Every call creates one more task, so call it once per task you want. If "
                    "it fails with backend_unavailable, use list_tasks to check whether the "
                    "task exists before calling again."
                ),
            ),
            "update_task_api_v1_tasks__task_id__patch": Rename(
                name="update_task",
                idempotent=True,
                title="Update a task",
                description=(
                    "Change one of your tasks: its title, its details, and/or whether it is "
                    "completed.\n\nPass task_id and at least one field to change; fields you "
                    "omit stay as they are. Returns the task as it is now. Answers not_found "
                    "for an id that is not one of your tasks."
                ),
            ),
            "complete_task_api_v1_tasks__task_id__complete_post": Rename(
                name="complete_task",
                title="Complete a task",
                idempotent=True,
                description=(
                    "Mark one of your tasks as completed and return it. Completing it again "
                    "changes nothing.\n\nAnswers not_found for an id that is not one of your "
                    "tasks."
                ),
            ),
            "delete_task_api_v1_tasks__task_id__delete": Rename(
                name="delete_task",
                title="Delete a task",
                description=(
                    "Delete one of your tasks for good. This cannot be undone.\n\nAnswers "
                    "not_found for an id that is not one of your tasks, or one already deleted."
                ),
            ),
        },
    ),
)


@TASKS.page(
    TaskOut,
    order=(Task.created_at.desc(), Task.id.desc()),
    items="tasks",
    title="List your tasks",
)
def list_tasks(
    status: Annotated[
        Status, Field(description="Which tasks: 'all' (default), 'pending' or 'completed'.")
    ] = STATUS_DEFAULT,
) -> Any:
    """List your tasks, newest first, one page at a time.

    To get the next page, call again with the same status and the returned next_cursor; it is
    null on the last page. A task you just created or changed always shows up here.
    """
    query = select(*_COLUMNS)
    if status != "all":
        query = query.where(Task.completed == (status == "completed"))
    return query


@TASKS.one(TaskOut, title="Get a task", missing="task {task_id} not found")
def get_task(task_id: TaskId) -> Any:
    """Get one of your tasks by id. Answers not_found for an id that is not one of yours."""
    return select(*_COLUMNS).where(Task.id == task_id)


@TASKS.row(UserStats, title="Count your tasks")
def get_user_stats() -> Any:
    """Count your tasks: total, completed and pending."""
    return select(
        func.count().label("total"),
        func.count().filter(Task.completed.is_(True)).label("completed"),
        func.count().filter(Task.completed.is_(False)).label("pending"),
    ).select_from(Task)
