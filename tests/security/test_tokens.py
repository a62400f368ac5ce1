"""Bearer tokens at both HTTP edges: the gateway's /mcp and the backend's REST API refuse every
token that the backend did not issue for the caller, and a real token acts for its user only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.agents import Agent, sign_up
from tests.support.config import TEST_JWT_SECRET, TEST_MCP_URL
from tests.support.mcp_results import ENVELOPE_CODES

# The HS384/HS512 forgeries use the real (HS256-sized) secret on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

ACCEPT = {"Accept": "application/json, text/event-stream"}
STATS_CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "get_user_stats", "arguments": {}},
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# The audience forged tokens claim: each forgery is tried as a gateway and as a backend token.
AUDIENCES = {"gateway": TEST_MCP_URL, "backend": "taskgate-api"}
AUDIENCE = AUDIENCES["gateway"]


def claims(agent: Agent, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": str(agent.id),
        "iat": now,
        "exp": now + 600,
        "iss": "taskgate",
        "aud": AUDIENCE,
    }
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def signed(
    payload: dict[str, Any],
    key: Any = TEST_JWT_SECRET,
    alg: str = "HS256",
    headers: dict[str, Any] | None = None,
) -> str:
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def unsigned(payload: dict[str, Any], alg: str, signature: str = "") -> str:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(payload).encode())}.{signature}"


def _attacker_rsa() -> tuple[Any, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return key, public_jwk


def _swap_subject(agent: Agent, victim: Agent) -> str:
    """The agent's real token with its subject changed to the victim's, signature kept."""
    header, payload, signature = agent.token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["sub"] = str(victim.id)
    return f"{header}.{_b64(json.dumps(body).encode())}.{signature}"


def _none_with_real_signature(agent: Agent) -> str:
    _, payload, signature = agent.token.split(".")
    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{payload}.{signature}"


def _rs256_with_embedded_key(agent: Agent) -> str:
    # "jwk header injection": the token carries the key that verifies it.
    key, public_jwk = _attacker_rsa()
    return signed(claims(agent), key, "RS256", headers={"jwk": public_jwk})


def _rs_hs_confusion(agent: Agent) -> str:
    # The classic confusion: HMAC keyed with a public key the attacker knows. Verifiers that take
    # the algorithm from the header and the key from a key set would accept it.
    _, public_jwk = _attacker_rsa()
    header = {"alg": "HS256", "typ": "JWT", "jwk": public_jwk}
    payload = _b64(json.dumps(claims(agent)).encode())
    head = _b64(json.dumps(header).encode())
    mac = hmac.new(json.dumps(public_jwk).encode(), f"{head}.{payload}".encode(), hashlib.sha256)
    return f"{head}.{payload}.{_b64(mac.digest())}"


Forgery = Callable[[Agent, Agent], str]
FORGERIES: dict[str, Forgery] = {
    "expired": lambda a, _: signed(
        claims(a, iat=int(time.time()) - 7200, exp=int(time.time()) - 1)
    ),
    "not-yet-valid": lambda a, _: signed(claims(a, nbf=int(time.time()) + 3600)),
    "wrong-secret": lambda a, _: signed(claims(a), "another-secret-" + "z" * 40),
    "alg-none": lambda a, _: unsigned(claims(a), "none"),
    "alg-None": lambda a, _: unsigned(claims(a), "None"),
    "alg-NONE-with-real-signature": lambda a, _: _none_with_real_signature(a),
    "hs512-with-the-right-secret": lambda a, _: signed(claims(a), TEST_JWT_SECRET, "HS512"),
    "hs384-with-the-right-secret": lambda a, _: signed(claims(a), TEST_JWT_SECRET, "HS384"),
    "rs256-with-embedded-key": lambda a, _: _rs256_with_embedded_key(a),
    "hs256-keyed-with-a-public-key": lambda a, _: _rs_hs_confusion(a),
    "subject-swapped": _swap_subject,
    "wrong-audience": lambda a, _: signed(claims(a, aud="someone-else")),
    "wrong-issuer": lambda a, _: signed(claims(a, iss="evil")),
    "no-expiry": lambda a, _: signed(claims(a, exp=None)),
    "no-subject": lambda a, _: signed(claims(a, sub=None)),
    # Signed with the real secret: the subject itself must be a plain user id.
    "sql-in-subject": lambda a, _: signed(claims(a, sub="1 OR 1=1")),
    "negative-subject": lambda a, _: signed(claims(a, sub="-1")),
    "garbage": lambda a, _: "not.a.jwt",
    "empty-segments": lambda a, _: "..",
}


@pytest.fixture(scope="module")
def agents(backend_url: str) -> tuple[Agent, Agent]:
    return sign_up(backend_url), sign_up(backend_url)


def _mcp(url: str, authorization: str | None) -> httpx.Response:
    headers = {**ACCEPT, **({"Authorization": authorization} if authorization else {})}
    return httpx.post(url, json=STATS_CALL, headers=headers, timeout=30)


def _backend(url: str, authorization: str | None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization else {}
    return httpx.get(f"{url}/api/v1/tasks", headers=headers, timeout=30)


def _assert_backend_refused(reply: httpx.Response) -> None:
    assert reply.status_code == 401, reply.text
    body = reply.json()
    assert body["status"] == "error"
    assert body["error_code"] == "unauthorized"
    assert body["error_code"] in ENVELOPE_CODES


@pytest.mark.parametrize("audience", list(AUDIENCES))
@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_forged_token_is_refused_by_the_gateway_and_the_backend(
    http_gateway: str,
    backend_url: str,
    agents: tuple[Agent, Agent],
    forgery: str,
    audience: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "AUDIENCE", AUDIENCES[audience])
    agent, victim = agents
    token = FORGERIES[forgery](agent, victim)
    gateway_reply = _mcp(http_gateway, f"Bearer {token}")
    assert gateway_reply.status_code == 401, gateway_reply.text
    assert 'error="invalid_token"' in gateway_reply.headers["WWW-Authenticate"]
    assert "Traceback" not in gateway_reply.text
    _assert_backend_refused(_backend(backend_url, f"Bearer {token}"))


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Token abc", "bearer", "Bearer a b"],
    ids=["absent", "empty", "scheme-only", "basic", "other-scheme", "lower", "two-tokens"],
)
def test_a_missing_or_malformed_authorization_header_is_refused(
    http_gateway: str, backend_url: str, authorization: str | None
) -> None:
    gateway_reply = _mcp(http_gateway, authorization)
    assert gateway_reply.status_code == 401, gateway_reply.text
    assert gateway_reply.headers["WWW-Authenticate"].startswith("Bearer")
    _assert_backend_refused(_backend(backend_url, authorization))


def test_the_real_token_is_served_so_the_refusals_above_are_about_the_token(
    http_gateway: str, backend_url: str, agents: tuple[Agent, Agent]
) -> None:
    agent, _ = agents
    reply = _mcp(http_gateway, f"Bearer {agent.token}")
    assert reply.status_code == 200, reply.text
    assert reply.json()["result"]["isError"] is False
    assert _backend(backend_url, f"Bearer {agent.backend_token}").status_code == 200


def test_another_users_token_sees_and_touches_only_its_own_tasks(
    http_gateway: str, backend_url: str, agents: tuple[Agent, Agent]
) -> None:
    owner, other = agents
    made = httpx.post(
        f"{backend_url}/api/v1/tasks",
        json={"title": "owner's secret plan"},
        headers={"Authorization": f"Bearer {owner.backend_token}"},
        timeout=30,
    )
    made.raise_for_status()
    task_id = made.json()["id"]
    as_other = {"Authorization": f"Bearer {other.backend_token}"}

    # Backend: every route answers 404 for a task of another user, as for a missing one.
    for method, path, body in [
        ("GET", f"/api/v1/tasks/{task_id}", None),
        ("PATCH", f"/api/v1/tasks/{task_id}", {"title": "mine now"}),
        ("POST", f"/api/v1/tasks/{task_id}/complete", None),
        ("DELETE", f"/api/v1/tasks/{task_id}", None),
    ]:
        reply = httpx.request(method, backend_url + path, json=body, headers=as_other, timeout=30)
        assert reply.status_code == 404, (method, path, reply.text)
        assert reply.json()["error_code"] == "not_found"
    listed = httpx.get(f"{backend_url}/api/v1/tasks", headers=as_other, timeout=30).json()
    assert task_id not in [t["id"] for t in listed["tasks"]]

    # Gateway: the same through the tools.
    for name, arguments in [
        ("get_task", {"task_id": task_id}),
        ("update_task", {"task_id": task_id, "title": "mine now"}),
        ("complete_task", {"task_id": task_id}),
        ("delete_task", {"task_id": task_id}),
    ]:
        call = {**STATS_CALL, "params": {"name": name, "arguments": arguments}}
        as_other_agent = {"Authorization": f"Bearer {other.token}"}
        reply = httpx.post(
            http_gateway, json=call, headers={**ACCEPT, **as_other_agent}, timeout=30
        )
        result = reply.json()["result"]
        assert result["isError"] is True, (name, result)
        assert json.loads(result["content"][0]["text"])["error_code"] == "not_found"

    # Nothing changed for the owner.
    mine = httpx.get(
        f"{backend_url}/api/v1/tasks/{task_id}",
        headers={"Authorization": f"Bearer {owner.backend_token}"},
        timeout=30,
    ).json()
    assert (mine["title"], mine["completed"]) == ("owner's secret plan", False)
