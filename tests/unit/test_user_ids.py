"""The user id kinds (shared.user_ids): which owner column means which kind, how each parses
what a caller sends into one spelling, and every place a caller's id is read or written uses it."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from mcp import Client
from mcp.server.auth.provider import AccessToken
from pydantic import SecretStr, TypeAdapter, ValidationError
from sqlalchemy import BigInteger, Integer, SmallInteger, String, Text, TypeDecorator, Uuid
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import NullType, TypeEngine

from gateway.app_auth import ClaimVerifier, ServiceSessionAuth, ServiceSessionLogin, SignedJwtAuth
from gateway.auth import JwtVerifier
from gateway.backend_client import BackendClient
from gateway.identity import Identity as CallerIdentity
from gateway.identity import resolve_principal
from gateway.served_app import AppSpecInvalid, load_served_app
from gateway.server import build_server
from shared.appspec import Identity, ServiceSession, SignedJwt
from shared.cursor import decode_keyset, encode_keyset
from shared.errors import ErrorCode, TaskgateError
from shared.rules import MAX_ID
from shared.settings import Settings
from shared.spec_loader import load_spec
from shared.tokens import issue_gateway_token, issue_token, verify_gateway_token, verify_token
from shared.user_ids import INT_IDS, UUID_IDS, user_ids_for
from taskgate.app_stack import DEMO_USER_UUID, UserApp
from taskgate.dev import app_user_line
from tests.support.mcp_results import envelope_of
from tests.support.uuid_items.processes import ITEMS_SPEC, REPO

USER = "0b7c5b9e-8f1a-4c3d-9e2f-1a2b3c4d5e6f"
SECRET = "unit-secret-" + "u" * 32


class _OwnerText(TypeDecorator[uuid.UUID]):
    impl = Uuid
    cache_ok = True


@pytest.mark.parametrize(
    ("sql_type", "kind"),
    [
        (Integer(), INT_IDS),
        (BigInteger(), INT_IDS),
        (SmallInteger(), INT_IDS),
        (Uuid(), UUID_IDS),
        (Uuid(as_uuid=False), UUID_IDS),
        (postgresql.UUID(), UUID_IDS),
        (postgresql.UUID(as_uuid=False), UUID_IDS),
        (_OwnerText(), UUID_IDS),
        (NullType(), None),  # holds "object" values: refused, as before
        (String(40), None),
        (Text(), None),
    ],
)
def test_the_owner_columns_sql_type_decides_the_kind(
    sql_type: TypeEngine[Any], kind: object
) -> None:
    assert user_ids_for(sql_type) is kind


@pytest.mark.parametrize(
    "value",
    [USER, USER.upper(), "0B7C5B9E-8f1a-4C3D-9e2f-1A2B3C4D5E6F", str(uuid.UUID(int=0))],
)
def test_a_canonical_uuid_in_any_case_is_one_lower_case_spelling(value: str) -> None:
    assert UUID_IDS.parse(value) == value.lower()
    assert UUID_IDS.required(value) == value.lower()


@pytest.mark.parametrize(
    "value",
    [
        "{" + USER + "}",
        USER.replace("-", ""),
        "urn:uuid:" + USER,
        " " + USER,
        USER + "\n",
        USER[:-1],
        USER[:-1] + "g",
        USER[:-1] + "\uff10",  # a fullwidth digit: not ASCII hex
        USER.replace("-", "_"),
        "7",
        7,
        uuid.UUID(USER),  # a JSON value is never a UUID object
        None,
        True,
        "",
    ],
)
def test_anything_else_is_no_uuid_user_id(value: object) -> None:
    assert UUID_IDS.parse(value) is None
    with pytest.raises(ValueError, match="must be a UUID string"):
        UUID_IDS.required(value)


def test_integer_ids_keep_their_rule() -> None:
    assert [INT_IDS.parse(v) for v in (3, "3", "0003", str(MAX_ID))] == [3, 3, 3, MAX_ID]
    assert [INT_IDS.parse(v) for v in (0, True, 3.0, USER, " 3", "\xb2", MAX_ID + 1)] == [None] * 7


def test_uuid_ids_bind_as_uuid_parameters_and_integers_as_themselves() -> None:
    assert UUID_IDS.bind(USER) == uuid.UUID(USER)
    assert INT_IDS.bind(7) == 7


def test_trusted_modes_argument_is_a_uuid_string_in_the_schema_and_checked() -> None:
    uuid_argument: TypeAdapter[str] = TypeAdapter(UUID_IDS.argument())
    schema = uuid_argument.json_schema()
    assert (schema["type"], schema["format"]) == ("string", "uuid")
    assert uuid_argument.validate_python(USER.upper()) == USER
    for bad in ("7", 7, USER.replace("-", "")):
        with pytest.raises(ValidationError):
            uuid_argument.validate_python(bad)
    int_argument: TypeAdapter[int] = TypeAdapter(INT_IDS.argument())
    assert int_argument.json_schema()["type"] == "integer"
    assert int_argument.validate_python("12") == 12


def test_the_caller_is_resolved_as_the_apps_kind() -> None:
    assert resolve_principal(True, None, {"user_id": USER.upper()}, UUID_IDS).user_id == USER
    access = AccessToken(token="t", client_id="c", scopes=[], subject=USER.upper())
    principal = resolve_principal(False, access, {}, UUID_IDS)
    assert (principal.user_id, principal.limit_key) == (USER, USER)
    with pytest.raises(TaskgateError) as refused:
        resolve_principal(True, None, {"user_id": 7}, UUID_IDS)
    assert refused.value.code == ErrorCode.VALIDATION_ERROR
    assert refused.value.message == "user_id must be a UUID string"
    assert refused.value.details["errors"][0]["field"] == "user_id"
    # A token that names an integer user, at an app whose users are UUIDs: the envelope's 401.
    integer = AccessToken(token="t", client_id="c", scopes=[], subject="42")
    with pytest.raises(TaskgateError) as refused:
        resolve_principal(False, integer, {}, UUID_IDS)
    assert refused.value.code == ErrorCode.UNAUTHORIZED
    with pytest.raises(TaskgateError) as refused:
        resolve_principal(False, access, {}, INT_IDS)
    assert refused.value.code == ErrorCode.UNAUTHORIZED


async def test_the_apps_own_tokens_name_a_user_of_its_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_SECRET", SECRET)
    verifier = ClaimVerifier(Identity(secret_env="APP_SECRET"), UUID_IDS)

    def token(sub: object) -> str:
        return jwt.encode({"sub": sub, "exp": int(time.time()) + 60}, SECRET, "HS256")

    access = await verifier.verify_token(token(USER.upper()))
    assert access is not None and access.subject == USER
    for bad in ("42", USER.replace("-", ""), "{" + USER + "}"):
        assert await verifier.verify_token(token(bad)) is None, bad
    integers = ClaimVerifier(Identity(secret_env="APP_SECRET"), INT_IDS)
    assert await integers.verify_token(token(USER)) is None
    known = await integers.verify_token(token("42"))
    assert known is not None and known.subject == "42"


def test_taskgates_own_tokens_name_uuids_for_a_gateway_and_integers_for_the_backend() -> None:
    settings = Settings(_env_file=None, jwt_secret=SECRET)
    assert verify_gateway_token(settings, issue_gateway_token(settings, USER)).user_id == USER
    assert verify_gateway_token(settings, issue_gateway_token(settings, 7)).user_id == 7
    backend = issue_token(settings, USER)
    with pytest.raises(jwt.InvalidTokenError):
        verify_token(settings, backend)  # the task service's backend: integer users only
    assert verify_token(settings, backend, subjects=(UUID_IDS,)).user_id == USER


def _sent(auth: httpx.Auth) -> httpx.Request:
    flow = auth.auth_flow(httpx.Request("POST", "http://app.test/items"))
    return next(flow)


def test_signed_jwt_puts_the_uuid_in_its_claim() -> None:
    for claim in ("sub", "uid"):
        request = _sent(SignedJwtAuth(SignedJwt(secret_env="S", claim=claim), SECRET, USER))
        token = request.headers["Authorization"].removeprefix("Bearer ")
        assert jwt.decode(token, SECRET, algorithms=["HS256"])[claim] == USER
    request = _sent(SignedJwtAuth(SignedJwt(secret_env="S"), SECRET, 7))
    token = request.headers["Authorization"].removeprefix("Bearer ")
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["sub"] == "7"  # as before


def test_a_service_session_names_the_uuid_in_its_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVC_USER", "svc")
    monkeypatch.setenv("SVC_PASSWORD", "pw")
    login = ServiceSessionLogin(ServiceSession("/login", "SVC_USER", "SVC_PASSWORD"))
    login.cookie = "session=1"
    assert _sent(ServiceSessionAuth(login, USER)).headers["X-Acting-User"] == USER


def test_a_page_cursor_keeps_a_uuid_key_exactly() -> None:
    key = uuid.UUID(USER)
    cursor = encode_keyset(b"k", "scope", ("2026-01-01", key))
    assert decode_keyset(b"k", "scope", cursor, 2) == ("2026-01-01", key)


async def test_taskgates_own_bearer_and_configured_token_name_a_user_of_the_apps_kind() -> None:
    settings = Settings(_env_file=None, jwt_secret=SECRET)
    access = await JwtVerifier(settings).verify_token(issue_gateway_token(settings, USER.upper()))
    assert access is not None and resolve_principal(False, access, {}, UUID_IDS).user_id == USER

    async with httpx.AsyncClient() as http:
        backend = BackendClient(http, "/healthz")
        configured = settings.model_copy(
            update={"gateway_token": SecretStr(issue_gateway_token(settings, USER))}
        )
        caller = await CallerIdentity(configured, backend, None, UUID_IDS).caller()
        assert caller.user_id == USER
        # A configured token naming an integer user, at an app whose users are UUIDs.
        integer = settings.model_copy(
            update={"gateway_token": SecretStr(issue_gateway_token(settings, 7))}
        )
        with pytest.raises(TaskgateError) as refused:
            await CallerIdentity(integer, backend, None, UUID_IDS).caller()
        assert refused.value.code == ErrorCode.UNAUTHORIZED
        assert refused.value.message == "GATEWAY_TOKEN names no user of this app: its ids are UUIDs"


def test_dev_signs_its_token_for_a_uuid_user_of_a_uuid_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ITEMS_SECRET", SECRET)
    app = UserApp(ITEMS_SPEC, load_spec(ITEMS_SPEC, str(REPO)), {})
    claims = jwt.decode(app.token(SECRET, "http://gw.test/mcp"), SECRET, algorithms=["HS256"])
    assert claims["sub"] == app.demo_user == DEMO_USER_UUID
    assert DEMO_USER_UUID in app_user_line(app)
    assert UUID_IDS.parse(DEMO_USER_UUID) == DEMO_USER_UUID


MIXED_SPEC = """
from sqlalchemy import BigInteger, Column, MetaData, Table, Uuid
from sqlalchemy.orm import registry
from taskgate.spec import AppSpec

METADATA = MetaData()
NOTES = Table("notes", METADATA, Column("id", BigInteger, primary_key=True),
              Column("owner_id", BigInteger))
ITEMS = Table("items", METADATA, Column("id", Uuid, primary_key=True), Column("owner_id", Uuid))


class Note:
    pass


class Item:
    pass


mapper = registry(metadata=METADATA)
mapper.map_imperatively(Note, NOTES)
mapper.map_imperatively(Item, ITEMS)
SPEC = AppSpec(name="mixed", openapi="openapi.json",
               owners={Note: Note.owner_id, Item: Item.owner_id})
"""


def test_a_gateway_refuses_a_spec_with_owner_columns_of_both_kinds_at_start(
    tmp_path: Path,
) -> None:
    (tmp_path / "mixed_spec.py").write_text(MIXED_SPEC)
    (tmp_path / "openapi.json").write_text('{"openapi": "3.1.0", "paths": {}}')
    settings = Settings(_env_file=None, taskgate_app=f"{tmp_path}/mixed_spec.py:SPEC")
    with pytest.raises(AppSpecInvalid) as refused:
        load_served_app(settings)
    assert str(refused.value) == (
        f"app spec {tmp_path}/mixed_spec.py:SPEC: owners: the owner columns hold different kinds "
        "of user id: notes.owner_id (integer), items.owner_id (UUID); one app's user ids are of "
        "one kind, so every owner column must hold integers or every one UUIDs"
    )


async def test_one_uuid_spelled_two_ways_spends_one_rate_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ITEMS_SECRET", SECRET)
    settings = Settings(
        _env_file=None,
        auth_mode="user_param",
        rate_limit_per_user=0.01,
        rate_limit_burst=2,
        read_database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none",
        taskgate_app=ITEMS_SPEC,
    )
    monkeypatch.chdir(REPO)
    server, _ = build_server(settings)
    async with Client(server) as client:
        # Refused without touching the database (an unknown argument), after the limit.
        answers = [
            envelope_of(await client.call_tool("count_items", {"user_id": spelled, "x": 1}))
            for spelled in (USER, USER.upper(), USER)
        ]
    codes = [e["error_code"] for e in answers]
    assert codes == ["validation_error", "validation_error", "rate_limited"]
