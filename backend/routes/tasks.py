from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from backend.deps import CurrentUser, SessionDep, SettingsDep
from backend.services import tasks
from shared.cursor import Keyset, decode_cursor, encode_cursor
from shared.schemas import Status, TaskCreate, TaskOut, TaskPage, TaskUpdate

router = APIRouter(prefix="/tasks", tags=["tasks"])

LSN_HEADER = "X-Commit-LSN"
IdempotencyKeyHeader = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TaskOut)
async def create_task(
    data: TaskCreate,
    user: CurrentUser,
    session: SessionDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> TaskOut:
    written, replayed = await tasks.create_task(session, user.id, data, idempotency_key)
    response.headers[LSN_HEADER] = written.commit_lsn
    if replayed:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    return TaskOut.model_validate(written.task)


@router.get("", response_model=TaskPage)
async def list_tasks(
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    status_filter: Annotated[Status, Query(alias="status")] = "all",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> TaskPage:
    secret = settings.jwt_secret.get_secret_value().encode()
    after = decode_cursor(secret, status_filter, cursor) if cursor else None
    rows = await tasks.list_tasks(session, user.id, status_filter, limit, after)
    next_cursor = None
    if len(rows) == limit:
        last = rows[-1]
        next_cursor = encode_cursor(secret, status_filter, Keyset(last.created_at, last.id))
    return TaskPage(tasks=[TaskOut.model_validate(t) for t in rows], next_cursor=next_cursor)


@router.get("/{task_id}", response_model=TaskOut)
async def get_task(task_id: int, user: CurrentUser, session: SessionDep) -> TaskOut:
    return TaskOut.model_validate(await tasks.get_task(session, user.id, task_id))


@router.patch("/{task_id}", response_model=TaskOut)
async def update_task(
    task_id: int, data: TaskUpdate, user: CurrentUser, session: SessionDep, response: Response
) -> TaskOut:
    written = await tasks.update_task(session, user.id, task_id, data)
    response.headers[LSN_HEADER] = written.commit_lsn
    return TaskOut.model_validate(written.task)


@router.post("/{task_id}/complete", response_model=TaskOut)
async def complete_task(
    task_id: int, user: CurrentUser, session: SessionDep, response: Response
) -> TaskOut:
    written = await tasks.update_task(session, user.id, task_id, TaskUpdate(completed=True))
    response.headers[LSN_HEADER] = written.commit_lsn
    return TaskOut.model_validate(written.task)


@router.delete("/{task_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_task(task_id: int, user: CurrentUser, session: SessionDep) -> Response:
    written = await tasks.delete_task(session, user.id, task_id)
    return Response(
        status_code=status.HTTP_204_NO_CONTENT, headers={LSN_HEADER: written.commit_lsn}
    )
