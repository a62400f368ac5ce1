"""The HTTP edges of both processes: DNS-rebinding checks on Host and Origin, request body
limits, cross-site cookie writes, and raw hostile bodies, which never get a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.settings import Settings
from tests.support.agents import Agent, sign_up

ACCEPT = {"Accept": "application/json, text/event-stream"}
MAX_BODY = Settings(_env_file=None).max_body_bytes
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def agent(backend_url: str) -> Agent:
    return sign_up(backend_url)


@pytest.fixture(scope="module")
def mcp(http_gateway: str, agent: Agent) -> Iterator[httpx.Client]:
    headers = {**ACCEPT, "Authorization": f"Bearer {agent.token}"}
    with httpx.Client(headers=headers, timeout=30) as client:
        yield client


def _call(tool: str, arguments: object, call_id: int = 1) -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "id": call_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


# -- Host and Origin (DNS rebinding) ----------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["attacker.example", "attacker.example:{port}", "127.0.0.1.nip.io:{port}", "0.0.0.0:{port}",
     "127.0.0.2:{port}", "localhost.attacker.example:{port}"],
)  # fmt: skip
def test_a_foreign_host_header_is_refused(http_gateway: str, mcp: httpx.Client, host: str) -> None:
    reply = mcp.post(
        http_gateway,
        json=_call("get_user_stats", {}),
        headers={"Host": host.format(port=_port(http_gateway))},
    )
    assert reply.status_code == 421, reply.text


@pytest.mark.parametrize(
    "origin",
    ["http://attacker.example", "null", "http://localhost.attacker.example:{port}",
     "https://127.0.0.1.attacker.example", "file://", "http://192.168.1.1:{port}"],
)  # fmt: skip
def test_a_foreign_origin_is_refused(http_gateway: str, mcp: httpx.Client, origin: str) -> None:
    reply = mcp.post(
        http_gateway,
        json=_call("get_user_stats", {}),
        headers={"Origin": origin.format(port=_port(http_gateway))},
    )
    assert reply.status_code == 403, reply.text


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_loopback_host_and_origin_are_served(
    http_gateway: str, mcp: httpx.Client, host: str
) -> None:
    here = f"{host}:{_port(http_gateway)}"
    reply = mcp.post(
        http_gateway,
        json=_call("get_user_stats", {}),
        headers={"Host": here, "Origin": f"http://{here}"},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["result"]["isError"] is False


# -- body limits ------------------------------------------------------------------------------


def _padded_call(size: int) -> bytes:
    """A valid tools/call whose JSON is exactly `size` bytes (padding in an unused field)."""
    call = _call("get_user_stats", {})
    call["pad"] = ""
    bare = len(json.dumps(call).encode())
    call["pad"] = "x" * (size - bare)
    body = json.dumps(call).encode()
    assert len(body) == size
    return body


def _chunks(body: bytes, size: int = 8192) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_the_gateway_refuses_a_body_over_the_limit_declared_or_streamed(
    http_gateway: str, mcp: httpx.Client
) -> None:
    over = _padded_call(MAX_BODY + 1)
    declared = mcp.post(http_gateway, content=over, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413
    # No Content-Length: the limit holds while the body streams in.
    streamed = mcp.post(
        http_gateway, content=_chunks(over), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert "content-length" not in streamed.request.headers
    # At the limit the call is served, so the 413s above are about size alone.
    at_limit = mcp.post(
        http_gateway, content=_padded_call(MAX_BODY), headers={"Content-Type": "application/json"}
    )
    assert at_limit.status_code == 200, at_limit.text
    assert at_limit.json()["result"]["isError"] is False


def test_the_backend_refuses_a_body_over_the_limit_declared_or_streamed(backend_url: str) -> None:
    agent = sign_up(backend_url)  # a fresh user, so "nothing was created" is exact
    auth = {"Authorization": f"Bearer {agent.backend_token}", "Content-Type": "application/json"}
    over = json.dumps({"title": "t", "description": "d" * MAX_BODY}).encode()
    with httpx.Client(base_url=backend_url, headers=auth, timeout=30) as http:
        for reply in (
            http.post("/api/v1/tasks", content=over),
            http.post("/api/v1/tasks", content=_chunks(over)),
        ):
            assert reply.status_code == 413, reply.text
            body = reply.json()
            assert (body["status"], body["error_code"]) == ("error", "bad_request")
            assert body["details"]["max_bytes"] == str(MAX_BODY)
        # Nothing was created by either.
        assert http.get("/api/v1/tasks").json()["tasks"] == []


def test_an_oversized_header_is_refused_without_a_5xx(http_gateway: str, backend_url: str) -> None:
    huge = {"Authorization": "Bearer " + "a" * 200_000, **ACCEPT}
    for url in (http_gateway, f"{backend_url}/api/v1/tasks"):
        try:
            reply = httpx.post(url, json=_call("get_user_stats", {}), headers=huge, timeout=30)
        except httpx.RemoteProtocolError:
            continue  # the server closed the connection on the header: also a refusal
        assert 400 <= reply.status_code < 500, (url, reply.status_code)


# -- cross-site writes on the backend ---------------------------------------------------------


def test_a_cross_site_cookie_write_is_forbidden_and_no_cors_is_granted(
    backend_url: str, agent: Agent
) -> None:
    with httpx.Client(base_url=backend_url, timeout=30) as browser:
        login = browser.post(
            "/api/v1/auth/token", data={"username": agent.email, "password": agent.password}
        )
        assert login.status_code == 200
        assert "taskgate_session" in browser.cookies
        attacker = {"Origin": "http://attacker.example"}
        write = browser.post("/api/v1/tasks", json={"title": "planted"}, headers=attacker)
        assert write.status_code == 403, write.text
        assert write.json()["error_code"] == "forbidden"
        preflight = browser.options(
            "/api/v1/tasks",
            headers={**attacker, "Access-Control-Request-Method": "POST"},
        )
        read = browser.get("/api/v1/tasks", headers=attacker)
        for reply in (preflight, read, write):
            assert "access-control-allow-origin" not in reply.headers
        assert all(t["title"] != "planted" for t in read.json()["tasks"])


# -- raw hostile bodies -----------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)
RPC = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "1.0", 2]) | JSON_VALUES},
    optional={
        "id": st.integers() | st.text() | st.none() | JSON_VALUES,
        "method": st.sampled_from(["tools/call", "tools/list", "initialize", "ping",
                                   "resources/list", "logging/setLevel"]) | st.text(),
        "params": st.fixed_dictionaries(
            {}, optional={"name": st.sampled_from(["get_task", "create_task"]) | JSON_VALUES,
                          "arguments": JSON_VALUES}
        ) | JSON_VALUES,
    },
)  # fmt: skip


@FUZZ
@given(body=st.binary(max_size=2000) | RPC.map(lambda m: json.dumps(m).encode()))
def test_hostile_bodies_never_get_a_5xx_from_the_gateway(
    http_gateway: str, mcp: httpx.Client, body: bytes
) -> None:
    reply = mcp.post(http_gateway, content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code < 500, (body, reply.status_code, reply.text)
    assert "Traceback" not in reply.text
    if reply.status_code == 200 and reply.headers["content-type"].startswith("application/json"):
        for message in (lambda r: r if isinstance(r, list) else [r])(reply.json()):
            result = message.get("result") or {}
            if result.get("isError"):
                envelope = json.loads(result["content"][0]["text"])
                assert envelope["error_code"] != "server_error", envelope


@FUZZ
@given(body=st.binary(max_size=2000) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_hostile_bodies_never_get_a_5xx_from_the_backend(
    backend_url: str, agent: Agent, body: bytes
) -> None:
    reply = httpx.post(
        f"{backend_url}/api/v1/tasks",
        content=body,
        headers={
            "Authorization": f"Bearer {agent.backend_token}",
            "Content-Type": "application/json",
        },
        timeout=30,
    )
    assert reply.status_code < 500, (body, reply.status_code, reply.text)
    if reply.status_code >= 400:
        assert reply.json()["status"] == "error"
    else:  # a body that happened to be a valid task: created for this agent, and no other
        assert (reply.status_code, reply.json()["user_id"]) == (201, agent.id), reply.text
