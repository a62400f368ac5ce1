"""The gateway's HTTP mapping to the backend, on respx: statuses, timeouts, retries, headers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from gateway.auth import BearerAuth, ExchangeAuth, TokenExchanger
from gateway.backend_client import BackendClient, create_http_client, error_from_response
from gateway.backend_transport import AiohttpTransport
from gateway.request_id import bind_request_id, reset_request_id
from shared.api import API_PREFIX
from shared.errors import ErrorCode, TaskgateError
from shared.logs import current_request_id
from shared.settings import Settings
from tests.support.respx_pool import respx_pool

BASE = "http://backend.test"
TASKS_PATH = f"{API_PREFIX}/tasks"
TASKS_PATH_URL = f"{BASE}{TASKS_PATH}"
TASK = {
    "id": 7,
    "user_id": 3,
    "title": "t",
    "description": None,
    "completed": False,
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
}
AUTH = BearerAuth("agent-token")


@pytest.fixture
async def backend() -> AsyncIterator[BackendClient]:
    settings = Settings(_env_file=None, fastapi_base_url=BASE)
    async with create_http_client(settings, transport=respx_pool()) as http:
        yield BackendClient(http)


async def failure(backend: BackendClient, method: str = "POST") -> TaskgateError:
    with pytest.raises(TaskgateError) as caught:
        await backend.send(method, TASKS_PATH, AUTH, json={"title": "t"})
    return caught.value


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, ErrorCode.BAD_REQUEST),
        (401, ErrorCode.UNAUTHORIZED),
        (403, ErrorCode.FORBIDDEN),
        (404, ErrorCode.NOT_FOUND),
        (405, ErrorCode.BAD_REQUEST),
        (409, ErrorCode.CONFLICT),
        (413, ErrorCode.BAD_REQUEST),
        (422, ErrorCode.VALIDATION_ERROR),
        (429, ErrorCode.RATE_LIMITED),
        (500, ErrorCode.SERVER_ERROR),
        (502, ErrorCode.SERVER_ERROR),
        (503, ErrorCode.SERVER_ERROR),
        (504, ErrorCode.SERVER_ERROR),
    ],
)
@respx.mock
async def test_a_status_without_an_envelope_maps_to_its_error_code(
    backend: BackendClient, status: int, code: ErrorCode
) -> None:
    respx.post(TASKS_PATH_URL).respond(status, text="<html>proxy says no</html>")
    error = await failure(backend)
    assert error.code is code
    assert "proxy says no" not in error.message  # a foreign body never reaches the agent


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422, 500, 503])
@respx.mock
async def test_the_backends_envelope_passes_through_unchanged(
    backend: BackendClient, status: int
) -> None:
    envelope = {
        "status": "error",
        "error_code": "conflict",
        "message": "the backend's own words",
        "details": {"field": "title", "n": 3},
    }
    respx.post(TASKS_PATH_URL).respond(status, json=envelope)
    error = await failure(backend)
    assert error.envelope().model_dump(mode="json") == envelope


@respx.mock
async def test_a_malformed_envelope_is_mapped_by_status(backend: BackendClient) -> None:
    respx.post(TASKS_PATH_URL).respond(
        404, json={"status": "error", "error_code": "no_such_code", "message": "x"}
    )
    assert (await failure(backend)).code is ErrorCode.NOT_FOUND


@respx.mock
async def test_connection_refused_is_backend_unavailable(backend: BackendClient) -> None:
    route = respx.post(TASKS_PATH_URL).mock(side_effect=httpx.ConnectError("refused"))
    error = await failure(backend)
    assert error.code is ErrorCode.BACKEND_UNAVAILABLE
    assert error.details == {"reason": "ConnectError"}
    assert route.call_count == 1  # nothing reached the backend, and nothing is retried blindly


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
@respx.mock
async def test_a_timeout_is_backend_unavailable_and_a_call_without_a_key_is_not_retried(
    backend: BackendClient, method: str
) -> None:
    route = respx.route(method=method, url=TASKS_PATH_URL).mock(
        side_effect=httpx.ReadTimeout("slow")
    )
    error = await failure(backend, method)
    assert error.code is ErrorCode.BACKEND_UNAVAILABLE
    assert error.details == {"reason": "ReadTimeout"}
    assert route.call_count == 1


@pytest.mark.parametrize(
    "first_failure",
    [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("reset"), httpx.ReadError("reset")],
)
@respx.mock
async def test_a_keyed_call_is_retried_once_with_the_same_key(
    backend: BackendClient, first_failure: Exception
) -> None:
    route = respx.post(TASKS_PATH_URL).mock(
        side_effect=[first_failure, httpx.Response(200, json=TASK)]
    )
    reply = await backend.send(
        "POST", TASKS_PATH, AUTH, json={"title": "t"}, idempotency_key="key-1"
    )
    assert reply.json() == TASK
    assert route.call_count == 2
    keys = [call.request.headers["Idempotency-Key"] for call in route.calls]
    assert keys == ["key-1", "key-1"]


@respx.mock
async def test_a_keyed_call_that_times_out_twice_is_backend_unavailable(
    backend: BackendClient,
) -> None:
    route = respx.post(TASKS_PATH_URL).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(TaskgateError) as caught:
        await backend.send("POST", TASKS_PATH, AUTH, json={}, idempotency_key="key-2")
    assert caught.value.code is ErrorCode.BACKEND_UNAVAILABLE
    assert route.call_count == 2


@respx.mock
async def test_a_keyed_call_is_not_retried_when_the_connection_was_refused(
    backend: BackendClient,
) -> None:
    route = respx.post(TASKS_PATH_URL).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(TaskgateError):
        await backend.send("POST", TASKS_PATH, AUTH, json={}, idempotency_key="key-3")
    assert route.call_count == 1


@respx.mock
async def test_a_call_carries_the_bound_request_id_and_the_callers_token(
    backend: BackendClient,
) -> None:
    route = respx.post(TASKS_PATH_URL).respond(
        201, json=TASK, headers={"X-Commit-LSN": "0/16B3748"}
    )
    bound = bind_request_id({"x-request-id": "call-42"})
    try:
        reply = await backend.send(
            "POST", TASKS_PATH, AUTH, json={"title": "t"}, idempotency_key="key-4"
        )
    finally:
        reset_request_id(bound)
    sent = route.calls.last.request
    assert sent.headers["X-Request-ID"] == "call-42"
    assert sent.headers["Authorization"] == "Bearer agent-token"
    assert sent.headers["Idempotency-Key"] == "key-4"
    assert json.loads(sent.content) == {"title": "t"}
    assert reply.headers["X-Commit-LSN"] == "0/16B3748"


@respx.mock
async def test_the_token_exchange_of_a_call_carries_its_request_id_too(
    backend: BackendClient,
) -> None:
    settings = Settings(_env_file=None, fastapi_base_url=BASE, jwt_secret="s" * 40)
    exchange = respx.post(f"{BASE}/token").respond(
        200, json={"access_token": "b", "token_type": "Bearer", "expires_in": 300}
    )
    respx.post(f"{TASKS_PATH_URL}/7/complete").respond(200, json=TASK)
    bound = bind_request_id({"x-request-id": "call-43"})
    try:
        await backend.send(
            "POST", f"{TASKS_PATH}/7/complete", ExchangeAuth(TokenExchanger(settings), "agent")
        )
    finally:
        reset_request_id(bound)
    assert exchange.calls.last.request.headers["X-Request-ID"] == "call-43"


@respx.mock
async def test_outside_a_call_no_request_id_is_sent(backend: BackendClient) -> None:
    route = respx.get(f"{BASE}/wal-position").respond(200, json={"lsn": "0/10"})
    assert await backend.wal_position() == 16
    assert "X-Request-ID" not in route.calls.last.request.headers


def test_an_unsafe_client_request_id_is_replaced() -> None:
    bound = bind_request_id({"x-request-id": "evil\nInjected: header"})
    try:
        request_id = current_request_id()
        assert request_id is not None
        assert "\n" not in request_id
        assert request_id != "evil\nInjected: header"
    finally:
        reset_request_id(bound)


def test_error_from_response_keeps_no_foreign_detail() -> None:
    error = error_from_response(httpx.Response(500, text="Traceback (most recent call last)"))
    assert "Traceback" not in json.dumps(error.envelope().model_dump(mode="json"))


def test_the_pooled_client_has_the_configured_limits_and_timeouts() -> None:
    settings = Settings(
        _env_file=None,
        backend_connect_timeout=1.5,
        backend_read_timeout=7,
        backend_write_timeout=8,
        backend_pool_timeout=9,
        backend_max_connections=33,
        backend_keepalive_seconds=3.5,
    )
    http = create_http_client(settings)
    assert http.timeout == httpx.Timeout(connect=1.5, read=7, write=8, pool=9)
    transport = http._transport
    assert isinstance(transport, AiohttpTransport)
    assert (transport.limits.max_connections, transport.limits.keepalive_expiry) == (33, 3.5)


@respx.mock
async def test_the_pooled_client_keeps_no_cookies_between_users(backend: BackendClient) -> None:
    respx.post(f"{BASE}/api/v1/auth/token").respond(
        200, json={"access_token": "a"}, headers={"Set-Cookie": "taskgate_session=a; Path=/"}
    )
    route = respx.get(TASKS_PATH_URL).respond(200, json={"tasks": []})
    await backend.http.post("/api/v1/auth/token", data={"username": "u", "password": "p"})
    await backend.send("GET", TASKS_PATH, AUTH)
    assert "cookie" not in route.calls.last.request.headers


def test_fastapis_detail_text_maps_to_the_envelope_by_status() -> None:
    error = error_from_response(httpx.Response(404, json={"detail": "Note not found"}))
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "Note not found")


def test_fastapis_422_list_maps_to_a_validation_error_naming_each_field() -> None:
    detail = [
        {"loc": ["body", "title"], "msg": "String should have at most 80 characters",
         "type": "string_too_long"},
        {"loc": ["query", "limit"], "msg": "Input should be an integer", "type": "int_parsing"},
    ]  # fmt: skip
    error = error_from_response(httpx.Response(422, json={"detail": detail}))
    assert error.code is ErrorCode.VALIDATION_ERROR
    assert [e["field"] for e in error.details["errors"]] == ["title", "limit"]
    assert "title" in error.message


def test_an_app_that_speaks_the_envelope_keeps_its_own_error() -> None:
    body = {"status": "error", "error_code": "conflict", "message": "tag exists", "details": {}}
    error = error_from_response(httpx.Response(409, json=body))
    assert (error.code, error.message) == (ErrorCode.CONFLICT, "tag exists")


@respx.mock
async def test_the_backends_liveness_is_asked_at_the_app_specs_health_path() -> None:
    settings = Settings(_env_file=None, fastapi_base_url=BASE)
    alive = respx.get(f"{BASE}/api/v1/utils/health-check/").respond(200, json=True)
    respx.get(f"{BASE}/healthz").respond(404)
    async with create_http_client(settings, transport=respx_pool()) as http:
        await BackendClient(http, "/api/v1/utils/health-check/").check_alive()
        with pytest.raises(httpx.HTTPStatusError):
            await BackendClient(http).check_alive()  # the default, /healthz
    assert alive.call_count == 1


@respx.mock
@pytest.mark.parametrize(
    ("base", "path", "sent"),
    [
        (BASE, TASKS_PATH, TASKS_PATH_URL),
        (f"{BASE}/prefix", "/notes/a b", f"{BASE}/prefix/notes/a%20b"),
        (f"{BASE}/prefix/", "notes/a%2Fb", f"{BASE}/prefix/notes/a%2Fb"),
    ],
)
async def test_each_path_goes_where_httpx_itself_would_send_it(
    base: str, path: str, sent: str
) -> None:
    route = respx.get(sent).respond(200, json={})
    settings = Settings(_env_file=None, fastapi_base_url=base)
    async with create_http_client(settings, transport=respx_pool()) as http:
        for _ in range(2):  # parsed once, then remembered
            await BackendClient(http).send("GET", path, AUTH, params={"q": "x y"})
        assert http.build_request("GET", path).url.copy_with(query=b"q=x+y") == sent + "?q=x+y"
    assert route.call_count == 2
    assert str(route.calls.last.request.url) == sent + "?q=x+y"


@respx.mock
async def test_long_paths_go_out_right_and_are_not_kept() -> None:
    settings = Settings(_env_file=None, fastapi_base_url=BASE)
    long_path = f"{TASKS_PATH}/{'x' * 5000}"
    route = respx.get(f"{BASE}{long_path}").respond(200, json={})
    respx.get(TASKS_PATH_URL).respond(200, json={})
    async with create_http_client(settings, transport=respx_pool()) as http:
        backend = BackendClient(http)
        await backend.send("GET", long_path, AUTH)
        await backend.send("GET", TASKS_PATH, AUTH)
        kept = backend._kept_url.cache_info().currsize
    assert route.call_count == 1
    assert kept == 1  # the short path only
