"""Agents signed up through the backend's REST API, with their bearer tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx

from tests.support.config import TEST_MCP_URL


@dataclass(frozen=True)
class Agent:
    id: int
    email: str
    password: str
    token: str  # for MCP: audience = the gateway's MCP_PUBLIC_URL (TEST_MCP_URL by default)
    backend_token: str  # for the backend's REST API


def sign_up(backend_url: str, mcp_url: str = TEST_MCP_URL) -> Agent:
    """A new user and their two bearer tokens, through the backend's REST API."""
    email = f"agent-{uuid.uuid4().hex[:12]}@example.com"
    password = uuid.uuid4().hex
    with httpx.Client(base_url=backend_url, timeout=10) as http:
        user = http.post("/api/v1/users", json={"email": email, "password": password})
        user.raise_for_status()
        tokens = []
        for resource in (mcp_url, None):
            form = {"username": email, "password": password}
            if resource is not None:
                form["resource"] = resource
            reply = http.post("/api/v1/auth/token", data=form)
            reply.raise_for_status()
            tokens.append(str(reply.json()["access_token"]))
        return Agent(int(user.json()["id"]), email, password, tokens[0], tokens[1])


def sign_up_for_mcp(backend_url: str) -> tuple[int, str]:
    """A new user's id and MCP bearer token, through the backend's REST API."""
    agent = sign_up(backend_url)
    return agent.id, agent.token
