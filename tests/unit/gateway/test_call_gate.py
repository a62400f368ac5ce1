"""The call gate: one rule for whom a call is for, and the limit counts that same caller."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.server.auth.provider import AccessToken

from gateway.identity import resolve_principal, user_id_of
from gateway.server import build_server
from shared.errors import ErrorCode, TaskgateError
from shared.rules import MAX_ID
from shared.settings import Settings
from tests.support.mcp_results import envelope_of

NO_DATABASE = "postgresql+asyncpg://nobody@127.0.0.1:1/none"


@pytest.mark.parametrize(
    ("value", "user_id"),
    [(3, 3), ("3", 3), ("0003", 3), (MAX_ID, MAX_ID), (str(MAX_ID), MAX_ID)],
)
def test_a_user_id_is_a_json_integer_or_ascii_digits(value: object, user_id: int) -> None:
    assert user_id_of(value) == user_id


@pytest.mark.parametrize(
    "value",
    [True, False, 3.0, 0, -3, MAX_ID + 1, "", " 3", "3 ", "+3", "\u0663", "\xb2", "3.0", None],
)
def test_anything_else_is_no_user_id(value: object) -> None:
    assert user_id_of(value) is None


def test_trusted_mode_resolves_the_argument_and_token_mode_the_subject() -> None:
    access = AccessToken(token="t", client_id="user:7", scopes=[], subject="7")
    assert resolve_principal(True, None, {"user_id": "12"}).limit_key == "12"
    assert resolve_principal(False, access, {"user_id": 12}).limit_key == "7"
    assert resolve_principal(False, None, {}).limit_key is None  # stdio's configured caller
    for bad in ({}, {"user_id": True}, {"user_id": 3.0}):
        with pytest.raises(TaskgateError) as refused:
            resolve_principal(True, None, bad)
        assert refused.value.code == ErrorCode.VALIDATION_ERROR
    odd = AccessToken(token="t", client_id="x", scopes=[], subject="admin")
    with pytest.raises(TaskgateError) as refused:
        resolve_principal(False, odd, {})
    assert refused.value.code == ErrorCode.UNAUTHORIZED


async def test_true_and_a_float_user_id_are_refused_and_digits_count_against_the_same_user() -> (
    None
):
    settings = Settings(
        _env_file=None,
        auth_mode="user_param",
        rate_limit_per_user=0.01,
        rate_limit_burst=2,
        read_database_url=NO_DATABASE,
    )
    server, _ = build_server(settings)
    async with Client(server) as client:
        refused = [
            envelope_of(await client.call_tool("get_user_stats", {"user_id": bad}))
            for bad in (True, 3.0, "3 ", "")
        ]
        # Two calls spend user 3's burst, spelled two ways; an unknown argument is refused
        # without touching the database, after the limit.
        answers: list[dict[str, Any]] = [
            envelope_of(await client.call_tool("get_user_stats", {"user_id": uid, "x": 1}))
            for uid in (3, "3", 3)
        ]
    assert [e["error_code"] for e in refused] == ["validation_error"] * 4
    assert [e["details"]["errors"][0]["field"] for e in refused] == ["user_id"] * 4
    assert [e["error_code"] for e in answers] == [
        "validation_error",
        "validation_error",
        "rate_limited",
    ]
