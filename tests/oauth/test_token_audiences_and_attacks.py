"""One audience per token, and the OAuth attacks the authorization server must refuse: a wrong
`resource`, a replayed code, a wrong PKCE verifier, an open redirect, and an agent exchanging
its own gateway token for a backend token."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx

from shared.errors import ErrorCode
from shared.tokens import GATEWAY_CLIENT_ID, TOKEN_EXCHANGE_GRANT
from tests.support.oauth import (
    ACCEPT,
    LIST_TOOLS,
    UNFOLLOWED_REDIRECT,
    OAuthStack,
    authorize_params,
    code_for_a_new_agent,
    discover,
    pkce_pair,
    redeem,
    refresh,
    register,
)

REDIRECT = UNFOLLOWED_REDIRECT


def _error(reply: httpx.Response) -> str:
    """The OAuth error code; the body is also the shared envelope."""
    assert reply.status_code in (400, 401), reply.text
    body = reply.json()
    assert body["status"] == "error" and body["error_code"] in {c.value for c in ErrorCode}
    assert body["details"]["oauth_error"] == body["error"]
    return str(body["error"])


def test_a_gateway_token_is_refused_by_the_backend_rest_api(oauth_stack: OAuthStack) -> None:
    agent = oauth_stack.agent()
    tasks = f"{oauth_stack.backend_url}/api/v1/tasks"
    refused = httpx.get(tasks, headers={"Authorization": f"Bearer {agent.token}"})
    assert refused.status_code == 401
    assert refused.json()["error_code"] == "unauthorized"
    assert "audience" in refused.json()["message"]
    served = httpx.get(tasks, headers={"Authorization": f"Bearer {agent.backend_token}"})
    assert served.status_code == 200


def test_a_backend_token_is_refused_by_the_gateway(oauth_stack: OAuthStack) -> None:
    agent = oauth_stack.agent()

    def list_tools(token: str) -> httpx.Response:
        headers = {**ACCEPT, "Authorization": f"Bearer {token}"}
        return httpx.post(oauth_stack.mcp_url, json=LIST_TOOLS, headers=headers, timeout=30)

    refused = list_tools(agent.backend_token)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    assert list_tools(agent.token).status_code == 200


def test_the_password_login_refuses_a_resource_of_no_known_service(
    oauth_stack: OAuthStack,
) -> None:
    agent = oauth_stack.agent()
    reply = httpx.post(
        f"{oauth_stack.backend_url}/api/v1/auth/token",
        data={
            "username": agent.email,
            "password": agent.password,
            "resource": "https://evil.example/mcp",
        },
    )
    assert reply.status_code == 400
    assert reply.json()["error_code"] == "bad_request"


def test_a_token_request_naming_another_resource_is_refused(oauth_stack: OAuthStack) -> None:
    with oauth_stack.client() as http:
        found, client_id, code, verifier = code_for_a_new_agent(oauth_stack, http)
        for resource in ("https://evil.example/mcp", oauth_stack.backend_url):
            reply = redeem(http, found, client_id, code, verifier, REDIRECT, resource)
            assert _error(reply) == "invalid_target", resource
        # The refusals did not use the code up: the right resource still gets the tokens.
        served = redeem(http, found, client_id, code, verifier, REDIRECT, found.resource)
        assert served.status_code == 200, served.text


def test_an_authorization_for_an_unknown_resource_is_refused(oauth_stack: OAuthStack) -> None:
    with oauth_stack.client() as http:
        found = discover(http, oauth_stack.mcp_url)
        client_id = register(http, found, REDIRECT)
        _, challenge = pkce_pair()
        params = authorize_params(client_id, REDIRECT, challenge, "https://evil.example/", "s")
        reply = http.get(found.authorize_url, params=params)
        assert reply.status_code == 302
        query = parse_qs(urlsplit(reply.headers["Location"]).query)
        assert query["error"] == ["invalid_target"] and query["state"] == ["s"]


def test_a_replayed_code_is_refused_and_revokes_what_its_first_use_got(
    oauth_stack: OAuthStack,
) -> None:
    with oauth_stack.client() as http:
        found, client_id, code, verifier = code_for_a_new_agent(oauth_stack, http)
        first = redeem(http, found, client_id, code, verifier, REDIRECT, found.resource)
        assert first.status_code == 200, first.text
        replay = redeem(http, found, client_id, code, verifier, REDIRECT, found.resource)
        assert _error(replay) == "invalid_grant"
        revoked = refresh(http, found, client_id, first.json()["refresh_token"], None)
        assert _error(revoked) == "invalid_grant"


def test_a_wrong_pkce_verifier_is_refused(oauth_stack: OAuthStack) -> None:
    with oauth_stack.client() as http:
        found, client_id, code, _ = code_for_a_new_agent(oauth_stack, http)
        wrong, _ = pkce_pair()
        reply = redeem(http, found, client_id, code, wrong, REDIRECT, found.resource)
        assert _error(reply) == "invalid_grant"
        assert "code_verifier" in reply.json()["error_description"]


def test_an_unregistered_redirect_uri_is_never_redirected_to(oauth_stack: OAuthStack) -> None:
    with oauth_stack.client() as http:
        found = discover(http, oauth_stack.mcp_url)
        client_id = register(http, found, REDIRECT)
        _, challenge = pkce_pair()
        for target in (
            "https://evil.example/callback",
            "http://127.0.0.1:1/callback/../evil",
            "http://127.0.0.1:1/other",
            "http://evil.example:1/callback",
        ):
            params = authorize_params(client_id, target, challenge, found.resource, "s")
            reply = http.get(found.authorize_url, params=params)
            assert reply.status_code == 400, (target, reply.text)
            assert "Location" not in reply.headers
        for uri in ("http://evil.example/callback", "javascript:alert(1)"):
            refused = http.post(
                found.register_url,
                json={"redirect_uris": [uri], "token_endpoint_auth_method": "none"},
            )
            assert refused.status_code == 400, (uri, refused.text)


def test_an_agent_cannot_exchange_its_own_gateway_token(oauth_stack: OAuthStack) -> None:
    agent = oauth_stack.agent()
    with oauth_stack.client() as http:
        found = discover(http, oauth_stack.mcp_url)
        own_client = register(http, found, REDIRECT)
        form = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": agent.token,
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        }
        as_itself = http.post(found.token_url, data={**form, "client_id": own_client})
        assert _error(as_itself) == "unauthorized_client"
        as_gateway = {**form, "client_id": GATEWAY_CLIENT_ID}
        no_secret = http.post(found.token_url, data=as_gateway)
        assert no_secret.status_code == 401 and _error(no_secret) == "invalid_client"
        guessed = http.post(found.token_url, data=as_gateway, auth=(GATEWAY_CLIENT_ID, "guess"))
        assert guessed.status_code == 401 and _error(guessed) == "invalid_client"


def test_hostile_oauth_requests_get_a_4xx_never_a_5xx(oauth_stack: OAuthStack) -> None:
    with oauth_stack.client() as http:
        found = discover(http, oauth_stack.mcp_url)
        hostile: list[dict[str, object]] = [
            {"redirect_uris": [REDIRECT], "client_name": "nul\u0000name"},
            {"redirect_uris": [REDIRECT], "client_name": "\ud800"},
            {"redirect_uris": ["http://127.0.0.1:1/\u0000"]},
            {"redirect_uris": []},
            {"redirect_uris": [REDIRECT], "client_name": "x" * 50_000},
        ]
        for metadata in hostile:
            body = json.dumps(metadata).encode()
            reply = http.post(
                found.register_url, content=body, headers={"Content-Type": "application/json"}
            )
            assert reply.status_code < 500, (metadata, reply.status_code, reply.text)
            if reply.status_code >= 400:
                assert reply.json()["status"] == "error"
        invalid_utf8 = http.get(f"{found.authorize_url}?response_type=code&client_id=%ED%A0%80")
        assert 400 <= invalid_utf8.status_code < 500
        for client_id in ("nul\u0000", "x" * 10_000, "taskgate-gateway"):
            params = {"response_type": "code", "client_id": client_id, "code_challenge": "c"}
            reply = http.get(found.authorize_url, params=params)
            assert 400 <= reply.status_code < 500, (client_id, reply.status_code)
            assert reply.json()["error_code"] == "bad_request"
        for form in (
            {"grant_type": "authorization_code", "client_id": "\u0000", "code": "c"},
            {"grant_type": "refresh_token", "client_id": "x" * 5000, "refresh_token": "\u0000"},
            {"grant_type": "password", "client_id": "a"},
            {"grant_type": TOKEN_EXCHANGE_GRANT, "client_id": "taskgate-gateway"},
        ):
            reply = http.post(found.token_url, data=form)
            assert 400 <= reply.status_code < 500, (form, reply.status_code, reply.text)
            _error(reply)
        for path in ("/oauth/login?request=forged", "/oauth/signup?request=x.y.z"):
            reply = http.get(f"{oauth_stack.backend_url}{path}")
            assert reply.status_code == 400 and reply.json()["error_code"] == "bad_request"
