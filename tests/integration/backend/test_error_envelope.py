"""Every 4xx and 5xx, FastAPI's own included, answers the shared envelope, never a traceback."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from sqlalchemy import text

from backend.app import create_app
from shared.errors import ErrorEnvelope
from shared.settings import Settings
from tests.support.backend_api import SignedUp, asgi_client
from tests.support.ports import free_port

TASKS = "/api/v1/tasks"


def _envelope(response: httpx.Response, status: int, code: str) -> ErrorEnvelope:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    envelope = ErrorEnvelope.model_validate_json(response.content)
    assert envelope.error_code == code
    assert "Traceback" not in response.text
    return envelope


async def test_unknown_route_answers_not_found(api: httpx.AsyncClient) -> None:
    _envelope(await api.get("/api/v1/nothing-here"), 404, "not_found")


async def test_wrong_method_answers_405_with_allow(api: httpx.AsyncClient, user: SignedUp) -> None:
    response = await api.put(f"{TASKS}/1", json={"title": "x"}, headers=user.auth)
    _envelope(response, 405, "bad_request")
    # Every method of the path, though GET, PATCH and DELETE are three separate routes.
    assert set(response.headers["Allow"].split(", ")) == {"GET", "PATCH", "DELETE"}


async def test_malformed_json_answers_bad_request(api: httpx.AsyncClient, user: SignedUp) -> None:
    response = await api.post(
        TASKS,
        content=b'{"title": "unterminated',
        headers={**user.auth, "Content-Type": "application/json"},
    )
    _envelope(response, 400, "bad_request")


async def test_body_of_another_content_type_answers_415(
    api: httpx.AsyncClient, user: SignedUp
) -> None:
    response = await api.post(
        TASKS, content=b"title=x", headers={**user.auth, "Content-Type": "text/plain"}
    )
    _envelope(response, 415, "bad_request")


async def test_validation_failure_lists_fields_without_echoing_input(
    api: httpx.AsyncClient, user: SignedUp
) -> None:
    secret = secrets.token_hex(8)
    response = await api.post(TASKS, json={"title": "", "note": secret}, headers=user.auth)
    envelope = _envelope(response, 422, "validation_error")
    assert sorted(e["field"] for e in envelope.details["errors"]) == ["note", "title"]
    assert secret not in response.text


async def test_body_over_the_limit_answers_413(
    api: httpx.AsyncClient, user: SignedUp, settings: Settings
) -> None:
    oversized = b'{"title": "' + b"x" * settings.max_body_bytes + b'"}'
    declared = await api.post(
        TASKS, content=oversized, headers={**user.auth, "Content-Type": "application/json"}
    )
    _envelope(declared, 413, "bad_request")

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit has to hold while the body streams in.
        for start in range(0, len(oversized), 4096):
            yield oversized[start : start + 4096]

    streamed = await api.post(
        TASKS, content=chunks(), headers={**user.auth, "Content-Type": "application/json"}
    )
    assert "content-length" not in streamed.request.headers
    _envelope(streamed, 413, "bad_request")


async def test_body_just_under_the_limit_is_read(
    api: httpx.AsyncClient, user: SignedUp, settings: Settings
) -> None:
    padded = b'{"title": "fits"}' + b" " * (settings.max_body_bytes - 17)
    assert len(padded) == settings.max_body_bytes
    response = await api.post(
        TASKS, content=padded, headers={**user.auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 201


@pytest.fixture
async def failing_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The real app plus one route whose query fails with the caller's data in its parameters."""
    app = create_app(settings)

    @app.get("/boom")
    async def boom(request: Request, secret: str) -> None:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1 / 0 WHERE :secret <> ''"), {"secret": secret})

    async with app.router.lifespan_context(app):
        yield app


async def test_unexpected_error_answers_500_and_logs_no_traceback_or_data(
    failing_app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    secret = secrets.token_hex(12)
    caplog.set_level(logging.DEBUG)
    async with asgi_client(failing_app) as client:
        response = await client.get("/boom", params={"secret": secret})
    envelope = _envelope(response, 500, "server_error")
    error_id = envelope.details["error_id"]
    assert secret not in response.text
    # The test's own client logs the URL it called; everything else is the server's log.
    server_log = [r for r in caplog.records if not r.name.startswith("httpx")]
    server_text = "\n".join(r.getMessage() for r in server_log)
    assert error_id in server_text  # the operator can find the client's error in the log
    assert secret not in server_text
    assert "Traceback" not in server_text
    assert all(record.exc_info is None for record in server_log)


@pytest.fixture
async def app_without_database(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app configured for a primary that does not answer (nothing listens on the port)."""
    nowhere = f"postgresql+asyncpg://taskgate:unused@127.0.0.1:{free_port()}/taskgate"
    app = create_app(settings.model_copy(update={"database_url": nowhere}))
    async with app.router.lifespan_context(app):
        yield app


async def test_database_outage_answers_backend_unavailable(
    app_without_database: FastAPI, user: SignedUp
) -> None:
    async with asgi_client(app_without_database) as client:
        alive = await client.get("/healthz")
        ready = await client.get("/readyz")
        sign_up = await client.post(
            "/api/v1/users", json={"email": "x@example.com", "password": "long-enough"}
        )
        tasks = await client.get(TASKS, headers=user.auth)
    assert alive.status_code == 200
    assert _envelope(ready, 503, "backend_unavailable").details == {"primary": "down"}
    for response in (sign_up, tasks):
        _envelope(response, 503, "backend_unavailable")
        assert response.headers["Retry-After"]


async def test_ready_when_the_primary_answers(api: httpx.AsyncClient) -> None:
    response = await api.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "primary": "up"}
