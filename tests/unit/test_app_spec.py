"""An app spec that cannot be served is refused when the gateway starts, with what to change;
and a user's app with packages named like taskgate's own is loaded beside them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from pydantic import BaseModel
from sqlalchemy import BigInteger, DateTime, ForeignKey, String, Uuid, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import shared.models
import taskgate.fastapi
from backend.app import create_app
from gateway.openapi_tools import OpenApiError, write_operations
from readmodel.reads import SpecError, compile_reads, owner_id_kind
from shared import api
from shared.appspec import AppSpec, Rename, Writes
from shared.settings import Settings
from shared.spec_loader import SpecLoadError, load_spec
from shared.task_service import TASKS
from shared.user_ids import INT_IDS, UUID_IDS
from shared.wal_position import COMMITTED_POSITION_SQL
from tests.support.config import TEST_JWT_SECRET
from tests.support.notes_app import NOTES_DIR, notes_env


class Base(DeclarativeBase):
    pass


class Board(Base):
    __tablename__ = "boards"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    owner_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Card(Base):
    __tablename__ = "cards"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    board_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("boards.id"))
    text: Mapped[str] = mapped_column(String(40))


class Pin(Base):
    __tablename__ = "pins"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    owner_id: Mapped[int] = mapped_column(BigInteger)
    board_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("boards.id"))


class Sheet(Base):  # as full-stack-fastapi-template's models are since 2024: UUID ids
    __tablename__ = "sheets"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid)


class BoardOut(BaseModel):
    id: int
    name: str


def _spec() -> AppSpec:
    return AppSpec(name="boards", openapi="unused.json", owners={Board: Board.owner_id})


def test_the_task_service_spec_compiles_to_its_three_read_tools() -> None:
    assert list(compile_reads(TASKS)) == ["list_tasks", "get_task", "get_user_stats"]


def test_a_read_of_a_table_without_an_owner_column_is_refused_at_start() -> None:
    spec = _spec()

    @spec.page(BoardOut, order=(Board.id.desc(),), items="boards", title="Boards")
    def boards_with_cards() -> Any:
        return select(Board.id, Board.name).join(Card, Card.board_id == Board.id)

    with pytest.raises(SpecError, match="cards, which has no owner column"):
        compile_reads(spec)


def test_a_subquery_over_an_unowned_table_is_refused_at_start() -> None:
    spec = _spec()

    @spec.row(BoardOut, title="Boards")
    def boards() -> Any:
        return select(Board.id, Board.name).where(Board.id.in_(select(Card.board_id)))

    with pytest.raises(SpecError, match="outside its FROM clause"):
        compile_reads(spec)


@pytest.mark.parametrize(
    ("order", "reason"),
    [
        ((Board.created_at.desc(), Board.id.asc()), "same direction"),
        ((Board.created_at.desc(),), "primary key"),
        ((Board.name.desc(), Board.id.desc()), "must be one of the selected columns"),
        ((), "needs an order"),
    ],
)
def test_a_page_that_cannot_be_paged_is_refused_at_start(order: Any, reason: str) -> None:
    spec = _spec()

    @spec.page(BoardOut, order=order, items="boards", title="Boards")
    def boards() -> Any:
        return select(Board.id, Board.created_at)

    with pytest.raises(SpecError, match=reason):
        compile_reads(spec)


def test_a_model_that_is_not_mapped_or_an_owner_column_of_another_table_is_refused() -> None:
    with pytest.raises(SpecError, match="not one of its columns"):
        compile_reads(AppSpec(name="x", openapi="x.json", owners={Board: Card.board_id}))


class SheetOut(BaseModel):
    id: uuid.UUID


class Label(Base):  # owned by a name: no kind of user id taskgate knows
    __tablename__ = "labels"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    owner_name: Mapped[str] = mapped_column(String(40))


def test_uuid_owner_columns_make_uuid_user_ids_bound_as_uuids() -> None:
    spec = AppSpec(name="sheets", openapi="x.json", owners={Sheet: Sheet.owner_id})

    @spec.one(SheetOut, title="Sheet", missing="no sheet")
    def get_sheet(sheet_id: uuid.UUID) -> Any:
        return select(Sheet.id).where(Sheet.id == sheet_id)

    assert owner_id_kind(spec) is UUID_IDS
    read = compile_reads(spec)["get_sheet"]
    assert (read.user_ids, read.uuid_values) == (UUID_IDS, True)
    owner = "0b7c5b9e-8f1a-4c3d-9e2f-1a2b3c4d5e6f"
    statement = read.statement(owner, read.checked({"sheet_id": str(uuid.uuid4())}))
    bound = statement.compile().params
    assert bound["owner_id_1"] == uuid.UUID(owner)  # a UUID parameter, not text
    assert owner_id_kind(_spec()) is INT_IDS
    assert compile_reads(TASKS)["get_task"].uuid_values is False


def test_owner_columns_of_two_kinds_are_refused_at_start_naming_each() -> None:
    owners = {Board: Board.owner_id, Sheet: Sheet.owner_id}
    spec = AppSpec(name="mixed", openapi="x.json", owners=owners)
    refusal = (
        r"owners: the owner columns hold different kinds of user id: "
        r"boards\.owner_id \(integer\), sheets\.owner_id \(UUID\)"
    )
    with pytest.raises(SpecError, match=refusal):
        compile_reads(spec)
    with pytest.raises(SpecError, match=refusal):
        owner_id_kind(spec)


def test_an_owner_column_of_another_type_is_refused_at_start_naming_it() -> None:
    spec = AppSpec(name="labels", openapi="x.json", owners={Label: Label.owner_name})
    refusal = r"labels\.owner_name holds str values: .* integers .* or UUIDs"
    with pytest.raises(SpecError, match=refusal):
        compile_reads(spec)


def test_every_read_gets_the_owner_filter_the_spec_did_not_write() -> None:
    read = compile_reads(TASKS)["get_task"]
    sql = str(read.statement(7, read.checked({"task_id": 3})))
    assert "tasks.user_id = :user_id_1" in sql


def test_each_shape_a_query_builds_gets_the_owner_filters_of_the_tables_it_reads() -> None:
    spec = AppSpec(
        name="boards", openapi="x.json", owners={Board: Board.owner_id, Pin: Pin.owner_id}
    )

    @spec.row(BoardOut, title="Boards")
    def boards(pinned: bool, name: str = "") -> Any:
        query = select(Board.id, Board.name).where(Board.name != name)
        return query.join(Pin, Pin.board_id == Board.id) if pinned else query

    read = compile_reads(spec)["boards"]
    # Alternating shapes, and one shape with other literals: each call its own tables' filters.
    for pinned, name in [(False, ""), (True, ""), (False, "a"), (True, "b"), (False, "")]:
        sql = str(read.statement(7, read.checked({"pinned": pinned, "name": name})))
        assert "boards.owner_id = :owner_id_1" in sql, sql
        assert ("pins.owner_id = :owner_id_2" in sql) is pinned, sql


def test_an_unknown_operation_or_tag_is_refused_at_start_naming_the_known_ones() -> None:
    document = json.loads((Path(TASKS.root or "") / TASKS.openapi).read_text())
    with pytest.raises(OpenApiError, match="create_task_api_v1_tasks_post"):
        write_operations(document, Writes(include_operations=["create_tsak"]))
    with pytest.raises(OpenApiError, match="tags no write operation has"):
        write_operations(document, Writes(include_tags=["taks"]))
    with pytest.raises(OpenApiError, match="does not have"):
        write_operations(document, Writes(tools={"nope": Rename(name="x")}))


def test_a_form_login_is_refused_saying_how_to_leave_it_out() -> None:
    form = {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}
    login = {"operationId": "login-login_access_token", "requestBody": form}
    document = {"openapi": "3.1.0", "paths": {"/api/v1/login/access-token": {"post": login}}}
    with pytest.raises(OpenApiError) as refused:
        write_operations(document, Writes())
    assert str(refused.value) == (
        "operation 'login-login_access_token' (POST /api/v1/login/access-token): only a JSON "
        "request body can be a tool's arguments; leave it out with "
        "Writes(exclude_operations=['login-login_access_token']), or choose the tools with "
        "include_tags or include_operations"
    )
    assert write_operations(document, Writes(exclude_operations=["login-login_access_token"])) == []


def test_annotations_follow_the_method_unless_the_spec_says_otherwise() -> None:
    document = json.loads((Path(TASKS.root or "") / TASKS.openapi).read_text())
    chosen = Writes(include_tags=["tasks"])
    plain = {op.operation_id: op.annotations for op in write_operations(document, chosen)}
    assert plain["create_task_api_v1_tasks_post"].idempotent_hint is False
    assert plain["delete_task_api_v1_tasks__task_id__delete"].destructive_hint is True
    assert plain["delete_task_api_v1_tasks__task_id__delete"].idempotent_hint is True
    assert plain["complete_task_api_v1_tasks__task_id__complete_post"].idempotent_hint is False
    spec = {op.name: op for op in write_operations(document, TASKS.writes)}
    assert spec["complete_task"].annotations.idempotent_hint is True
    assert spec["create_task"].idempotency_header == "Idempotency-Key"
    assert spec["update_task"].request({"task_id": 5, "title": "t"}) == (
        "/api/v1/tasks/5",
        {},
        {"title": "t"},
    )


def test_the_task_services_openapi_document_is_the_backends_own() -> None:
    document = json.loads((Path(TASKS.root or "") / TASKS.openapi).read_text())
    assert document == create_app(Settings(_env_file=None)).openapi(), (
        "regenerate shared/task_service_openapi.json from backend.app.create_app(...).openapi()"
    )


def test_taskgate_fastapi_speaks_the_headers_the_gateway_reads() -> None:
    assert (taskgate.fastapi.LSN_HEADER, taskgate.fastapi.WAL_POSITION_PATH) == (
        api.LSN_HEADER,
        api.WAL_POSITION_PATH,
    )


def test_taskgate_fastapi_answers_the_commit_position_by_the_one_rule() -> None:
    assert str(taskgate.fastapi._POSITION) == COMMITTED_POSITION_SQL


def test_an_app_with_packages_named_backend_and_shared_loads_beside_taskgates_own() -> None:
    ours = {name: sys.modules[name] for name in ("shared", "shared.models", "backend.app")}
    with mock.patch.dict(os.environ, notes_env("postgresql+asyncpg://u:p@127.0.0.1:1/none")):
        spec = load_spec("notes_spec:SPEC", app_dir=str(NOTES_DIR))
    assert {name: sys.modules[name] for name in ours} == ours  # taskgate's, untouched
    note = next(iter(spec.owners))
    # The app's own shared.models, under its own name, read from the app's folder.
    assert note.__module__ == "shared.models" and note.__tablename__ == "notes"
    spec_module = sys.modules["notes_spec"]
    assert Path(spec_module.__file__ or "").is_relative_to(NOTES_DIR) and spec_module.Note is note
    assert not hasattr(shared.models, "Note")
    assert "create_note" in json.dumps(spec.openapi_document)
    assert list(compile_reads(spec)) == ["list_notes", "notes_tagged", "get_note"]


def test_a_spec_that_cannot_be_imported_says_so_at_start() -> None:
    with pytest.raises(SpecLoadError, match="module:attribute"):
        load_spec("no_colon")
    with pytest.raises(SpecLoadError, match="cannot import"):
        load_spec("no_such_module_here:SPEC")


def test_the_gateway_command_refuses_a_bad_spec_in_one_line_before_serving() -> None:
    env = {**os.environ, "JWT_SECRET": TEST_JWT_SECRET, "MCP_PORT": "1"}
    env.pop("TASKGATE_APP", None)
    done = subprocess.run(
        [sys.executable, "-P", "-m", "taskgate", "gateway", "--app", "no_such_spec:SPEC"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("taskgate gateway: app spec no_such_spec:SPEC: cannot import")
    assert "Traceback" not in done.stderr
