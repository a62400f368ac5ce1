"""The gateway's RFC 8693 flow to the backend: one exchange per agent token while it is fresh,
as the `taskgate-gateway` client, the agent's token never sent as a bearer, a bounded memory."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from gateway import auth
from gateway.auth import ExchangeAuth, TokenExchanger
from gateway.backend_client import BackendClient, create_http_client
from shared.api import API_PREFIX
from shared.errors import ErrorCode, TaskgateError
from shared.settings import Settings
from shared.tokens import GATEWAY_CLIENT_ID, TOKEN_EXCHANGE_GRANT, gateway_client_secret
from tests.support.respx_pool import respx_pool

TASKS_PATH = f"{API_PREFIX}/tasks"

BASE = "http://backend.test"
TOKEN = f"{BASE}/token"
TASKS = f"{BASE}/api/v1/tasks"


@pytest.fixture
def settings() -> Settings:
    return Settings(_env_file=None, fastapi_base_url=BASE, jwt_secret="s" * 40)


@pytest.fixture
async def backend(settings: Settings) -> AsyncIterator[BackendClient]:
    async with create_http_client(settings, transport=respx_pool()) as http:
        yield BackendClient(http)


def exchanged(*tokens: str, expires_in: int = 300) -> list[httpx.Response]:
    return [
        httpx.Response(
            200, json={"access_token": t, "token_type": "Bearer", "expires_in": expires_in}
        )
        for t in tokens
    ]


@respx.mock
async def test_one_exchange_serves_every_call_while_the_backend_token_is_fresh(
    settings: Settings, backend: BackendClient
) -> None:
    exchange = respx.post(TOKEN).mock(side_effect=exchanged("backend-1"))
    tasks = respx.get(TASKS).respond(200, json={"tasks": []})
    exchanger = TokenExchanger(settings)

    for _ in range(3):
        await backend.send("GET", TASKS_PATH, ExchangeAuth(exchanger, "agent-token"))

    assert exchange.call_count == 1
    sent = exchange.calls.last.request
    form = parse_qs(sent.content.decode())
    assert form["grant_type"] == [TOKEN_EXCHANGE_GRANT]
    assert form["subject_token"] == ["agent-token"]
    credentials = f"{GATEWAY_CLIENT_ID}:{gateway_client_secret(settings)}".encode()
    assert sent.headers["Authorization"] == f"Basic {base64.b64encode(credentials).decode()}"
    assert [c.request.headers["Authorization"] for c in tasks.calls] == ["Bearer backend-1"] * 3


@respx.mock
async def test_a_token_near_its_expiry_is_exchanged_again(
    settings: Settings, backend: BackendClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    exchange = respx.post(TOKEN).mock(side_effect=exchanged("b1", "b2", expires_in=60))
    tasks = respx.get(TASKS).respond(200, json={"tasks": []})
    exchanger = TokenExchanger(settings)
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])

    await backend.send("GET", TASKS_PATH, ExchangeAuth(exchanger, "agent"))
    clock[0] += 46  # 60 s token, refreshed 15 s (a quarter) before it expires
    await backend.send("GET", TASKS_PATH, ExchangeAuth(exchanger, "agent"))

    assert exchange.call_count == 2
    assert [c.request.headers["Authorization"] for c in tasks.calls] == ["Bearer b1", "Bearer b2"]


@respx.mock
async def test_a_refused_exchange_is_unauthorized_and_the_call_is_not_sent(
    settings: Settings, backend: BackendClient
) -> None:
    respx.post(TOKEN).respond(400, json={"error": "invalid_grant"})
    tasks = respx.get(TASKS).respond(200, json={"tasks": []})

    with pytest.raises(TaskgateError) as refused:
        await backend.send("GET", TASKS_PATH, ExchangeAuth(TokenExchanger(settings), "agent"))

    assert refused.value.code is ErrorCode.UNAUTHORIZED
    assert tasks.call_count == 0


@respx.mock
async def test_a_gateway_the_backend_does_not_know_is_a_server_error(
    settings: Settings, backend: BackendClient
) -> None:
    respx.post(TOKEN).respond(401, json={"error": "invalid_client"})
    with pytest.raises(TaskgateError) as refused:
        await backend.send("GET", TASKS_PATH, ExchangeAuth(TokenExchanger(settings), "agent"))
    assert refused.value.code is ErrorCode.SERVER_ERROR
    assert "secret" not in refused.value.message.lower()


def test_the_memory_of_exchanged_tokens_is_bounded(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "EXCHANGED_TOKENS_MAX", 5)
    exchanger = TokenExchanger(settings)
    for i in range(50):  # one hostile caller with ever new tokens
        exchanger.accept(f"agent-{i}", exchanged(f"backend-{i}")[0])
    assert len(exchanger._cache) == 5
    assert exchanger.cached("agent-49") == "backend-49"
    assert exchanger.cached("agent-0") is None
