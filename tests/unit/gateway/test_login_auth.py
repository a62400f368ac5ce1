"""The stdio login flow: one pooled client, a login on the first call and again after a 401."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from gateway.auth import LoginAuth
from gateway.backend_client import BackendClient, create_http_client
from shared.api import API_PREFIX
from shared.errors import ErrorCode, TaskgateError
from shared.settings import Settings
from tests.support.respx_pool import respx_pool

BASE = "http://backend.test"
LOGIN = f"{BASE}/api/v1/auth/token"
TASKS = f"{BASE}/api/v1/tasks"

TASKS_PATH = f"{API_PREFIX}/tasks"


@pytest.fixture
async def backend() -> AsyncIterator[BackendClient]:
    settings = Settings(_env_file=None, fastapi_base_url=BASE)
    async with create_http_client(settings, transport=respx_pool()) as http:
        yield BackendClient(http)


def tokens(*values: str) -> list[httpx.Response]:
    return [httpx.Response(200, json={"access_token": v, "token_type": "bearer"}) for v in values]


def sent_tokens(route: respx.Route) -> list[str]:
    return [call.request.headers["Authorization"] for call in route.calls]


@respx.mock
async def test_the_first_call_logs_in_with_the_configured_form(backend: BackendClient) -> None:
    login = respx.post(LOGIN).mock(side_effect=tokens("t1"))
    tasks = respx.get(TASKS).respond(200, json={"tasks": []})
    auth = LoginAuth(BASE, "me@example.com", "s3cret-pass")

    await backend.send("GET", TASKS_PATH, auth)
    await backend.send("GET", TASKS_PATH, auth)

    assert login.call_count == 1  # the token is kept for later calls
    assert login.calls.last.request.content == b"username=me%40example.com&password=s3cret-pass"
    assert sent_tokens(tasks) == ["Bearer t1", "Bearer t1"]


@respx.mock
async def test_a_401_logs_in_again_and_resends_the_call_once(backend: BackendClient) -> None:
    login = respx.post(LOGIN).mock(side_effect=tokens("old", "new"))
    tasks = respx.post(TASKS).mock(
        side_effect=[httpx.Response(401), httpx.Response(201, json={"id": 1})]
    )
    auth = LoginAuth(BASE, "me@example.com", "pw-123456")
    await backend.log_in(auth)

    reply = await backend.send("POST", TASKS_PATH, auth, json={"title": "t"})

    assert reply.json() == {"id": 1}
    assert login.call_count == 2
    assert sent_tokens(tasks) == ["Bearer old", "Bearer new"]
    assert [c.request.content for c in tasks.calls] == [b'{"title":"t"}'] * 2


@respx.mock
async def test_a_second_401_is_unauthorized_without_looping(backend: BackendClient) -> None:
    login = respx.post(LOGIN).mock(side_effect=tokens("a", "b", "c"))
    tasks = respx.get(TASKS).respond(401)
    with pytest.raises(TaskgateError) as caught:
        await backend.send("GET", TASKS_PATH, LoginAuth(BASE, "me@example.com", "pw-123456"))
    assert caught.value.code is ErrorCode.UNAUTHORIZED
    assert login.call_count == 2
    assert tasks.call_count == 2


@respx.mock
async def test_refused_credentials_are_unauthorized_and_the_password_stays_secret(
    backend: BackendClient,
) -> None:
    respx.post(LOGIN).respond(
        401,
        json={"status": "error", "error_code": "unauthorized", "message": "bad", "details": {}},
    )
    tasks = respx.get(TASKS).respond(200, json={})
    auth = LoginAuth(BASE, "me@example.com", "pw-never-shown")
    with pytest.raises(TaskgateError) as caught:
        await backend.send("GET", TASKS_PATH, auth)
    assert caught.value.code is ErrorCode.UNAUTHORIZED
    assert "GATEWAY_EMAIL" in caught.value.message
    assert "pw-never-shown" not in repr(auth) + str(caught.value.envelope())
    assert tasks.call_count == 0


@respx.mock
async def test_a_backend_that_is_down_at_login_is_backend_unavailable(
    backend: BackendClient,
) -> None:
    respx.post(LOGIN).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(TaskgateError) as caught:
        await backend.log_in(LoginAuth(BASE, "me@example.com", "pw-123456"))
    assert caught.value.code is ErrorCode.BACKEND_UNAVAILABLE
