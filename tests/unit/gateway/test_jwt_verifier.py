"""The gateway's bearer verifier remembers tokens that passed, and only until they expire."""

from __future__ import annotations

import time

import jwt
import pytest

from gateway import auth
from gateway.auth import JwtVerifier
from shared.settings import Settings
from shared.tokens import TokenClaims, issue_gateway_token, issue_token, verify_gateway_token


@pytest.fixture
def settings() -> Settings:
    return Settings(_env_file=None, jwt_secret="unit-secret-" + "x" * 32)


async def test_a_token_is_verified_once_then_remembered(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def counted(settings: Settings, token: str) -> TokenClaims:
        calls.append(token)
        return verify_gateway_token(settings, token)

    monkeypatch.setattr(auth, "verify_gateway_token", counted)
    verifier = JwtVerifier(settings)
    token = issue_gateway_token(settings, 7)

    first = await verifier.verify_token(token)
    second = await verifier.verify_token(token)

    assert first is not None and first.subject == "7"
    assert second is first
    assert len(calls) == 1


async def test_a_remembered_token_is_verified_again_once_it_expires(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = JwtVerifier(settings)
    token = issue_gateway_token(settings, 7, ttl_seconds=60)
    assert await verifier.verify_token(token) is not None

    calls: list[str] = []

    def expired(settings: Settings, token: str) -> TokenClaims:
        calls.append(token)
        raise jwt.ExpiredSignatureError("expired")

    monkeypatch.setattr(auth, "verify_gateway_token", expired)
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)

    assert await verifier.verify_token(token) is None
    assert calls == [token]  # the memory did not answer for an expired token


async def test_a_bad_token_is_never_remembered(settings: Settings) -> None:
    verifier = JwtVerifier(settings)
    forged = issue_gateway_token(
        Settings(_env_file=None, jwt_secret="other-secret-" + "y" * 32),
        7,
    )
    assert await verifier.verify_token(forged) is None
    assert await verifier.verify_token(forged) is None
    assert forged not in verifier._verified


async def test_a_backend_token_is_refused_by_the_gateway(settings: Settings) -> None:
    verifier = JwtVerifier(settings)
    assert await verifier.verify_token(issue_gateway_token(settings, 7)) is not None
    assert await verifier.verify_token(issue_token(settings, 7)) is None  # aud = JWT_AUDIENCE
    other_gateway = issue_token(settings, 7, audience="https://other.example/mcp")
    assert await verifier.verify_token(other_gateway) is None
