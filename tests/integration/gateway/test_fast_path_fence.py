"""The SDK fence's start-up self-test: on an SDK whose replies the fast path would not match
byte for byte, the path stays off (one ERROR, the gauge at 0) and every call is the SDK's to
answer, never a 500; on the SDK as pinned, the path is on and answers cache hits."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import mcp.server._streamable_http_modern as sdk_modern_entry
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.server import build_http_app
from shared.settings import Settings
from shared.tokens import issue_token
from tests.support.config import TEST_MCP_URL
from tests.support.fast_path import ACCEPT, META, MODERN, metric

USER_ID = 424_242  # no tasks: each read is an empty page, no backend needed


async def _spaced_writer(msg: Any, scope: Scope, receive: Receive, send: Send) -> None:
    """What a new SDK release might send: the same reply, spelled with spaces."""
    body = msg.model_dump(mode="json", by_alias=True, exclude_none=True)
    await Response(json.dumps(body), media_type="application/json")(scope, receive, send)


@asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app: Starlette = build_http_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8001"
        ) as client,
    ):
        yield client


async def _list_tasks(client: httpx.AsyncClient, token: str, modern: bool) -> httpx.Response:
    params: dict[str, Any] = {"name": "list_tasks", "arguments": {"limit": 5}}
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": ACCEPT,
        "Content-Type": "application/json",
    }
    if modern:
        params["_meta"] = META
        headers |= {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call"}
        headers["Mcp-Name"] = "list_tasks"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    return await client.post("/mcp", json=body, headers=headers)


def _counted(series: dict[str, float]) -> dict[str, float]:
    """The series that counted something (every tool's outcomes start at 0)."""
    return {labels: value for labels, value in series.items() if value}


async def _calls_and_metrics(settings: Settings) -> tuple[list[httpx.Response], str]:
    token = issue_token(settings, USER_ID, 300, audience=TEST_MCP_URL)
    async with _serving(settings) as client:
        replies = [await _list_tasks(client, token, modern) for modern in (False, True) * 2]
        scraped = (await client.get("/metrics")).text
    return replies, scraped


def _assert_all_answered(replies: list[httpx.Response]) -> None:
    assert [r.status_code for r in replies] == [200] * len(replies)
    for reply in replies:
        result = reply.json()["result"]
        assert result["isError"] is False and result["structuredContent"]["tasks"] == []


async def test_a_mismatched_sdk_leaves_the_fast_path_off_with_one_error_and_no_500(
    settings: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sdk_modern_entry, "_write", _spaced_writer)
    with caplog.at_level(logging.INFO):
        replies, scraped = await _calls_and_metrics(settings)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in errors] == ["gateway.fast_path"]
    assert "stays off" in errors[0].getMessage() and "2026-07-28" in errors[0].getMessage()
    _assert_all_answered(replies)
    assert replies[1].content.startswith(b'{"jsonrpc": "2.0"')  # the SDK's (patched) writer
    assert metric(scraped, "taskgate_fast_path_enabled") == {"": 0.0}
    assert sum(metric(scraped, "taskgate_fast_path_answers_total").values()) == 0
    calls = _counted(metric(scraped, "taskgate_tool_calls_total"))
    assert calls == {'{outcome="ok",tool="list_tasks"}': 4.0}  # all through the SDK's gate


async def test_the_pinned_sdk_passes_the_self_test_and_the_path_answers_hits(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        replies, scraped = await _calls_and_metrics(settings)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    _assert_all_answered(replies)
    assert metric(scraped, "taskgate_fast_path_enabled") == {"": 1.0}
    # The first call loads the page (a miss); both eras' later calls hit its cache key.
    answers = metric(scraped, "taskgate_fast_path_answers_total")
    assert answers == {
        '{cache="miss",tool="list_tasks"}': 1.0,
        '{cache="hit",tool="list_tasks"}': 3.0,
    }
    calls = metric(scraped, "taskgate_tool_calls_total")
    assert _counted(calls) == {'{outcome="ok",tool="list_tasks"}': 4.0}  # one gate, both paths
