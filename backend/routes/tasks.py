from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Header, Path, Query, Response, status

from backend.deps import CurrentUser, SessionDep, SettingsDep
from backend.openapi import AUTH_ERRORS, COMMON_ERRORS, LSN_HEADER_DOC, error_responses, written
from backend.services import tasks
from shared.api import IDEMPOTENCY_HEADER, LSN_HEADER, REPLAYED_HEADER
from shared.cursor import decode_keyset, encode_keyset
from shared.paging import TaskKeyset
from shared.rules import (
    CURSOR_MAX,
    IDEMPOTENCY_KEY_MAX,
    LIMIT_DEFAULT,
    STATUS_DEFAULT,
    PageLimit,
    Status,
    TaskId,
)
from shared.schemas import TaskCreate, TaskOut, TaskPage, TaskUpdate

router = APIRouter(
    prefix="/tasks", tags=["tasks"], responses=error_responses(*COMMON_ERRORS, *AUTH_ERRORS)
)

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX,
        pattern=r"^[\x21-\x7E]+$",  # visible ASCII, as in a UUID or any client-made token
        description="Retries with the same key and body return the first call's task.",
    ),
]
TaskIdPath = Annotated[TaskId, Path()]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskOut,
    responses={
        201: written("The task was created."),
        200: {
            "model": TaskOut,
            "description": "A retry with an Idempotency-Key already used with this body: "
            "that task, as it is now.",
            "headers": {
                **LSN_HEADER_DOC,
                REPLAYED_HEADER: {
                    "description": "`true`: no task was created by this call.",
                    "schema": {"type": "string", "enum": ["true"]},
                },
            },
        },
        **error_responses(409),
    },
)
async def create_task(
    data: TaskCreate,
    user: CurrentUser,
    session: SessionDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> TaskOut:
    """Create a task for the caller. Title and description are trimmed, then checked."""
    written_task, replayed = await tasks.create_task(session, user.id, data, idempotency_key)
    response.headers[LSN_HEADER] = written_task.commit_lsn
    if replayed:
        response.status_code = status.HTTP_200_OK
        response.headers[REPLAYED_HEADER] = "true"
    return TaskOut.model_validate(written_task.task)


@router.get("", response_model=TaskPage)
async def list_tasks(
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    status_filter: Annotated[Status, Query(alias="status")] = STATUS_DEFAULT,
    limit: Annotated[PageLimit, Query()] = LIMIT_DEFAULT,
    cursor: Annotated[str | None, Query(max_length=CURSOR_MAX)] = None,
) -> TaskPage:
    """The caller's tasks, newest first. Pass `next_cursor` back as `cursor` for the next page."""
    secret = settings.jwt_secret.get_secret_value().encode()
    # Signed by us: a cursor that decodes holds the (created_at, id) it was made from.
    after = cast(TaskKeyset, decode_keyset(secret, status_filter, cursor, 2)) if cursor else None
    rows, more = await tasks.list_tasks(session, user.id, status_filter, limit, after)
    next_cursor = None
    if more:
        last = rows[-1]
        next_cursor = encode_keyset(secret, status_filter, (last.created_at, last.id))
    return TaskPage(tasks=[TaskOut.model_validate(t) for t in rows], next_cursor=next_cursor)


@router.get("/{task_id}", response_model=TaskOut, responses=error_responses(404))
async def get_task(task_id: TaskIdPath, user: CurrentUser, session: SessionDep) -> TaskOut:
    """One of the caller's tasks. Another user's task answers 404, like a missing one."""
    return TaskOut.model_validate(await tasks.get_task(session, user.id, task_id))


@router.patch(
    "/{task_id}",
    response_model=TaskOut,
    responses={200: written("The updated task."), **error_responses(404)},
)
async def update_task(
    task_id: TaskIdPath,
    data: TaskUpdate,
    user: CurrentUser,
    session: SessionDep,
    response: Response,
) -> TaskOut:
    """Change the fields sent. `description: null` clears it; title and completed cannot be null."""
    written_task = await tasks.update_task(session, user.id, task_id, data)
    response.headers[LSN_HEADER] = written_task.commit_lsn
    return TaskOut.model_validate(written_task.task)


@router.post(
    "/{task_id}/complete",
    response_model=TaskOut,
    responses={200: written("The task, now completed."), **error_responses(404)},
)
async def complete_task(
    task_id: TaskIdPath, user: CurrentUser, session: SessionDep, response: Response
) -> TaskOut:
    """Mark the task completed. Completing a completed task is not an error."""
    written_task = await tasks.complete_task(session, user.id, task_id)
    response.headers[LSN_HEADER] = written_task.commit_lsn
    return TaskOut.model_validate(written_task.task)


@router.delete(
    "/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={204: written("The task was deleted."), **error_responses(404)},
)
async def delete_task(task_id: TaskIdPath, user: CurrentUser, session: SessionDep) -> Response:
    """Delete the task."""
    written_task = await tasks.delete_task(session, user.id, task_id)
    return Response(
        status_code=status.HTTP_204_NO_CONTENT, headers={LSN_HEADER: written_task.commit_lsn}
    )
