"""Write calls on the fast path: once a write's tool has run, the path answers the request
whatever fails after, and never passes it on to the SDK, which would send the write again."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from gateway.encoded_results import ReplyEncoder
from gateway.server import build_http_app
from shared.settings import Settings
from taskgate.pgpair import PgPair
from tests.support.agents import sign_up
from tests.support.fast_path import Corpus, answered, metric


async def test_a_write_whose_answer_fails_to_encode_is_answered_once_and_not_replayed(
    settings: Settings,
    backend_url: str,
    pg_pair: PgPair,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = sign_up(backend_url)

    async def broken(self: ReplyEncoder, *args: object) -> object:
        raise RuntimeError("the writer broke")

    monkeypatch.setattr(ReplyEncoder, "encode", broken)
    app = build_http_app(settings.model_copy(update={"fastapi_base_url": backend_url}))
    c = Corpus(agent.token)
    c.call("create", "create_task", {"title": "sent once"})
    case = c.cases[0]
    with caplog.at_level(logging.ERROR):
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8001"
            ) as client,
        ):
            reply = await client.post("/mcp", content=case.body, headers=case.headers)
            scraped = (await client.get("/metrics")).text
    assert reply.status_code == 200, reply.text
    result = reply.json()["result"]
    envelope = json.loads(result["content"][0]["text"])
    assert result["isError"] is True and envelope["error_code"] == "server_error"
    assert answered(scraped, "write") == 1
    assert metric(scraped, "taskgate_fast_path_enabled") == {"": 1.0}
    created = pg_pair.psql(f"SELECT count(*) FROM tasks WHERE user_id = {agent.id}")
    assert created == "1"  # passed on to the SDK, it would have been created twice
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in errors] == ["gateway.fast_path"], errors
    assert "create_task" in errors[0].getMessage()
