"""The backend app on the real primary, called in-process through httpx's ASGI transport."""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from backend.app import create_app
from shared.settings import Settings
from taskgate.pgpair import PgPair


@pytest.fixture(scope="session")
async def backend_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan running, so its engine on the primary is open."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="session")
async def primary(pg_pair: PgPair) -> AsyncIterator[AsyncEngine]:
    """The primary as its superuser, to check and change rows behind the backend's back."""
    engine = create_async_engine(pg_pair.admin_url, pool_size=2)
    try:
        yield engine
    finally:
        await engine.dispose()


def asgi_client(app: FastAPI) -> httpx.AsyncClient:
    """A client that calls the app in-process; it keeps cookies like a browser."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://backend.test")


@pytest.fixture
async def api(backend_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(backend_app) as client:
        yield client


@dataclass(frozen=True)
class SignedUp:
    id: int
    email: str
    password: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def sign_up(api: httpx.AsyncClient) -> SignedUp:
    """A new user, signed up and logged in through the REST API."""
    email = f"user-{uuid.uuid4().hex[:12]}@example.com"
    password = uuid.uuid4().hex
    created = await api.post("/api/v1/users", json={"email": email, "password": password})
    assert created.status_code == 201, created.text
    login = await api.post("/api/v1/auth/token", data={"username": email, "password": password})
    assert login.status_code == 200, login.text
    return SignedUp(created.json()["id"], email, password, login.json()["access_token"])


@pytest.fixture
async def user(api: httpx.AsyncClient) -> SignedUp:
    return await sign_up(api)


@pytest.fixture
async def other_user(api: httpx.AsyncClient) -> SignedUp:
    return await sign_up(api)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many cases schemathesis generated, when the contract test ran."""
    contract = sys.modules.get("tests.integration.backend.test_openapi_contract")
    generated: Counter[str] = Counter(getattr(contract, "GENERATED", None))
    if generated:
        per_operation = ", ".join(f"{op}: {n}" for op, n in sorted(generated.items()) if n > 1)
        terminalreporter.write_line(
            f"schemathesis generated {sum(generated.values())} cases"
            f" (one each for wrong methods; {per_operation})"
        )
