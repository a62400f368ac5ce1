"""The REST API's per-user limit runs before routing: an over-limit caller is refused before
the router, each call is charged once, and another user keeps their allowance."""

from __future__ import annotations

import httpx
import pytest

from backend.app import create_app
from backend.sessions import SESSION_COOKIE
from shared.settings import Settings
from tests.support.backend_api import SignedUp, app_running, sign_up

BURST = 5
TASKS = "/api/v1/tasks"


@pytest.fixture
def limited(settings: Settings) -> Settings:
    # A refill slow enough that no token comes back during the test.
    return settings.model_copy(
        update={"rest_rate_limit_per_user": 0.001, "rest_rate_limit_burst": BURST}
    )


async def _signed_up(client: httpx.AsyncClient) -> SignedUp:
    user = await sign_up(client)
    client.cookies.clear()  # the next user's sign-up must not carry this one's session
    return user


async def test_each_call_is_charged_once_and_the_next_is_refused_before_routing(
    limited: Settings,
) -> None:
    async with app_running(create_app(limited)) as api:
        user, other = await _signed_up(api), await _signed_up(api)
        statuses = [(await api.get(TASKS, headers=user.auth)).status_code for _ in range(BURST)]
        assert statuses == [200] * BURST  # charged twice, only half would pass

        refused = await api.get(TASKS, headers=user.auth)
        assert refused.status_code == 429, refused.text
        body = refused.json()
        assert body["error_code"] == "rate_limited"
        assert refused.headers["Retry-After"] == str(body["details"]["retry_after_seconds"])

        # A path no route serves answers 429, not 404: the refusal came before the router.
        unrouted = await api.get("/api/v1/no-such-route", headers=user.auth)
        assert unrouted.status_code == 429, unrouted.text

        assert (await api.get(TASKS, headers=other.auth)).status_code == 200


async def test_the_session_cookie_is_charged_like_the_bearer(limited: Settings) -> None:
    async with app_running(create_app(limited)) as api:
        user = await _signed_up(api)
        api.cookies.set(SESSION_COOKIE, user.token)
        statuses = [(await api.get(TASKS)).status_code for _ in range(BURST + 1)]
        assert statuses == [200] * BURST + [429]
        # The bearer of the same user draws on the same allowance.
        assert (await api.get(TASKS, headers=user.auth)).status_code == 429


async def test_a_token_that_does_not_verify_is_not_charged_and_gets_its_reason(
    limited: Settings,
) -> None:
    async with app_running(create_app(limited)) as api:
        user = await _signed_up(api)
        for _ in range(BURST * 2):
            reply = await api.get(TASKS, headers={"Authorization": f"Bearer {user.token}x"})
            assert reply.status_code == 401
            assert reply.json()["message"] == "token is not valid"
        malformed = await api.get(TASKS, headers={"Authorization": f"Token {user.token}"})
        assert malformed.status_code == 401
        assert "Bearer" in malformed.json()["message"]
        # None of those was charged to the user whose token they resembled.
        statuses = [(await api.get(TASKS, headers=user.auth)).status_code for _ in range(BURST)]
        assert statuses == [200] * BURST
