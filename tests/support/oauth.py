"""An MCP client's side of OAuth 2.1, step by step over real HTTP, for tests to drive and poke."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from shared.api import OAUTH_METADATA_PATH
from tests.support.agents import Agent, sign_up

ACCEPT = {"Accept": "application/json, text/event-stream"}
LIST_TOOLS = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge), RFC 7636."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def hidden_field(html: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', html)
    assert match is not None, f"no hidden field {name} in the page"
    return unescape(match.group(1))


@dataclass(frozen=True)
class Discovery:
    resource: str
    issuer: str
    metadata: dict[str, Any]

    @property
    def authorize_url(self) -> str:
        return str(self.metadata["authorization_endpoint"])

    @property
    def token_url(self) -> str:
        return str(self.metadata["token_endpoint"])

    @property
    def register_url(self) -> str:
        return str(self.metadata["registration_endpoint"])


def discover(http: httpx.Client, mcp_url: str) -> Discovery:
    """401 → protected-resource metadata (RFC 9728) → authorization-server metadata (RFC 8414)."""
    unauthorized = http.post(mcp_url, json=LIST_TOOLS, headers=ACCEPT)
    assert unauthorized.status_code == 401
    match = re.search(r'resource_metadata="([^"]+)"', unauthorized.headers["WWW-Authenticate"])
    assert match is not None
    prm = http.get(match.group(1))
    assert prm.status_code == 200
    issuer = str(prm.json()["authorization_servers"][0]).rstrip("/")
    metadata = http.get(f"{issuer}{OAUTH_METADATA_PATH}")
    assert metadata.status_code == 200
    return Discovery(str(prm.json()["resource"]), issuer, metadata.json())


def register(http: httpx.Client, found: Discovery, redirect_uri: str) -> str:
    """RFC 7591, as a public client (PKCE, no secret); returns the client_id."""
    reply = http.post(
        found.register_url,
        json={
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "taskgate test client",
        },
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["client_id"])


def authorize_params(
    client_id: str, redirect_uri: str, challenge: str, resource: str | None, state: str
) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": state,
    }
    if resource is not None:
        params["resource"] = resource
    return params


def open_login_page(http: httpx.Client, found: Discovery, params: dict[str, str]) -> httpx.Response:
    """GET /authorize, which redirects to the login page; returns the page."""
    start = http.get(found.authorize_url, params=params)
    assert start.status_code == 302, start.text
    page = http.get(start.headers["Location"])
    assert page.status_code == 200, page.text
    return page


def submit_login(
    http: httpx.Client, page: httpx.Response, email: str, password: str, csrf: str | None = None
) -> httpx.Response:
    form = {
        "request": hidden_field(page.text, "request"),
        "csrf": csrf if csrf is not None else hidden_field(page.text, "csrf"),
        "email": email,
        "password": password,
    }
    return http.post(str(page.url.copy_with(query=None)), data=form)


def code_from(redirect: httpx.Response, state: str) -> str:
    assert redirect.status_code == 302, redirect.text
    query = parse_qs(urlsplit(redirect.headers["Location"]).query)
    assert query["state"] == [state]
    return query["code"][0]


def log_in_for_code(
    http: httpx.Client,
    found: Discovery,
    client_id: str,
    redirect_uri: str,
    email: str,
    password: str,
    resource: str | None,
) -> tuple[str, str]:
    """The browser part: /authorize, the login form, the redirect. Returns (code, verifier)."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(8)
    params = authorize_params(client_id, redirect_uri, challenge, resource, state)
    page = open_login_page(http, found, params)
    return code_from(submit_login(http, page, email, password), state), verifier


def redeem(
    http: httpx.Client,
    found: Discovery,
    client_id: str,
    code: str,
    verifier: str,
    redirect_uri: str,
    resource: str | None,
) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client_id,
        "code_verifier": verifier,
    }
    if resource is not None:
        form["resource"] = resource
    return http.post(found.token_url, data=form)


def refresh(
    http: httpx.Client, found: Discovery, client_id: str, token: str, resource: str | None
) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    if resource is not None:
        form["resource"] = resource
    return http.post(found.token_url, data=form)


ACCESS_TTL_SECONDS = 4


@dataclass(frozen=True)
class OAuthStack:
    backend_url: str
    mcp_url: str

    def agent(self) -> Agent:
        """A new user, with a gateway token for this stack's gateway."""
        return sign_up(self.backend_url, self.mcp_url)

    def client(self) -> httpx.Client:
        """What a browser does: keeps cookies, does not follow redirects by itself."""
        return httpx.Client(timeout=30, follow_redirects=False)


# A redirect URI that a test registers but never follows: the code is read from the Location.
UNFOLLOWED_REDIRECT = "http://127.0.0.1:1/callback"


def code_for_a_new_agent(stack: OAuthStack, http: httpx.Client) -> tuple[Discovery, str, str, str]:
    """A fresh agent logs in through a newly registered client, for the gateway:
    (discovery, client_id, code, PKCE verifier)."""
    agent = stack.agent()
    found = discover(http, stack.mcp_url)
    client_id = register(http, found, UNFOLLOWED_REDIRECT)
    code, verifier = log_in_for_code(
        http, found, client_id, UNFOLLOWED_REDIRECT, agent.email, agent.password, found.resource
    )
    return found, client_id, code, verifier
