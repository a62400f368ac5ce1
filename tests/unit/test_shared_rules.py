"""Each rule in shared/ is the one every edge uses: tool schemas, REST parameters, admin API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from mcp.types import Tool

from backend.app import create_app
from gateway.admin import TtlUpdate
from gateway.backend_client import error_from_response
from gateway.served_app import AppSpecInvalid, load_served_app
from gateway.server import build_server
from shared.errors import HTTP_STATUS, ErrorCode, error_code_for_status, validation_error
from shared.rules import (
    CURSOR_MAX,
    DESCRIPTION_MAX,
    LIMIT_MAX,
    LIMIT_MIN,
    MAX_ID,
    STATUSES,
    TITLE_MAX,
)
from shared.settings import Settings
from shared.task_service import TASKS

READ_TOOLS = tuple(read.name for read in TASKS.reads)


def _settings() -> Settings:
    return Settings(_env_file=None)


async def _tools() -> list[Tool]:
    server, _ = build_server(_settings())
    return await server.list_tools()


async def test_read_tools_are_exactly_the_gateways_read_only_tools() -> None:
    read_only = {
        tool.name
        for tool in await _tools()
        if tool.annotations is not None and tool.annotations.read_only_hint
    }
    assert read_only == set(READ_TOOLS)


@pytest.mark.parametrize("tool", READ_TOOLS)
def test_admin_api_and_settings_accept_every_read_tool(tool: str) -> None:
    assert TtlUpdate.model_validate({"ttl": 5, "tool": tool}).tool == tool
    settings = Settings(_env_file=None, cache_ttl_overrides={tool: 5})
    assert settings.cache_ttl_overrides == {tool: 5}


def test_a_ttl_override_of_a_tool_that_is_not_a_read_tool_is_refused_at_start() -> None:
    with pytest.raises(AppSpecInvalid, match="create_task"):
        load_served_app(Settings(_env_file=None, cache_ttl_overrides={"create_task": 5}))


async def test_tool_schemas_carry_the_shared_bounds() -> None:
    schemas: dict[str, dict[str, Any]] = {tool.name: tool.input_schema for tool in await _tools()}
    listing = schemas["list_tasks"]["properties"]
    assert (listing["limit"]["minimum"], listing["limit"]["maximum"]) == (LIMIT_MIN, LIMIT_MAX)
    assert listing["cursor"]["anyOf"][0]["maxLength"] == CURSOR_MAX
    assert tuple(listing["status"]["enum"]) == STATUSES
    for tool in ("get_task", "update_task", "complete_task", "delete_task"):
        task_id = schemas[tool]["properties"]["task_id"]
        assert (task_id["minimum"], task_id["maximum"]) == (1, MAX_ID), tool
        assert task_id["description"] == "The task's id, as returned by the other tools.", tool
    created = schemas["create_task"]["properties"]
    assert created["title"]["maxLength"] == TITLE_MAX
    assert created["description"]["anyOf"][0]["maxLength"] == DESCRIPTION_MAX


def test_rest_parameters_carry_the_shared_bounds() -> None:
    paths = create_app(_settings()).openapi()["paths"]
    listing = {p["name"]: p["schema"] for p in paths["/api/v1/tasks"]["get"]["parameters"]}
    assert (listing["limit"]["minimum"], listing["limit"]["maximum"]) == (LIMIT_MIN, LIMIT_MAX)
    assert listing["cursor"]["anyOf"][0]["maxLength"] == CURSOR_MAX
    assert tuple(listing["status"]["enum"]) == STATUSES
    one = paths["/api/v1/tasks/{task_id}"]["get"]["parameters"]
    task_id = next(p["schema"] for p in one if p["name"] == "task_id")
    assert (task_id["minimum"], task_id["maximum"]) == (1, MAX_ID)


@pytest.mark.parametrize("code", [c for c in ErrorCode if HTTP_STATUS[c] < 500])
def test_each_client_error_code_survives_its_http_status(code: ErrorCode) -> None:
    assert error_code_for_status(HTTP_STATUS[code]) is code


@pytest.mark.parametrize("status", [400, 403, 404, 405, 409, 413, 415, 418, 422, 429, 500, 503])
def test_gateway_maps_a_bare_backend_status_as_the_shared_table(status: int) -> None:
    error = error_from_response(httpx.Response(status, content=b"not an envelope"))
    assert error.code is error_code_for_status(status)


def test_validation_error_lists_fields_without_the_rejected_input() -> None:
    errors = [
        {"loc": ("body", "title"), "type": "string_too_long", "msg": "too long", "input": "x"}
    ]
    plain = validation_error(errors, "arguments are not valid")
    assert plain.code is ErrorCode.VALIDATION_ERROR
    assert plain.details == {
        "errors": [{"field": "body.title", "type": "string_too_long", "message": "too long"}]
    }
    located = validation_error(errors, "request is not valid", located=True)
    assert located.details["errors"] == [
        {"location": "body", "field": "title", "type": "string_too_long", "message": "too long"}
    ]
    many = validation_error(errors * 50, "arguments are not valid")
    assert len(many.details["errors"]) == 20
