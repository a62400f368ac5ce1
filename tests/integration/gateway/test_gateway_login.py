"""The stdio login flow against the real backend: an expired token is replaced on the next call."""

from __future__ import annotations

import time

import jwt

from gateway.auth import LoginAuth
from gateway.backend_client import BackendClient, create_http_client
from shared.api import API_PREFIX
from shared.settings import Settings
from shared.tokens import verify_token
from tests.support.agents import sign_up
from tests.support.config import TEST_JWT_SECRET
from tests.support.gateways import gateway_settings

TASKS_PATH = f"{API_PREFIX}/tasks"


async def test_an_expired_token_is_replaced_by_a_new_login(
    settings: Settings, backend_url: str
) -> None:
    agent = sign_up(backend_url)
    now = int(time.time())
    expired = jwt.encode(
        {
            "sub": str(agent.id),
            "iat": now - 7200,
            "exp": now - 3600,
            "iss": settings.jwt_issuer,
            "aud": settings.jwt_audience,
        },
        TEST_JWT_SECRET,
        algorithm="HS256",
    )
    auth = LoginAuth(backend_url, agent.email, agent.password)
    auth.token = expired
    configured = gateway_settings(settings, backend_url)
    async with create_http_client(configured) as http:
        reply = await BackendClient(http).send("GET", TASKS_PATH, auth)

    assert reply.json() == {"tasks": [], "next_cursor": None}
    assert auth.token is not None and auth.token != expired
    assert verify_token(configured, auth.token).user_id == agent.id
