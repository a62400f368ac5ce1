"""The backend app on the real primary, called in-process through httpx's ASGI transport."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from backend.app import create_app
from shared.settings import Settings
from taskgate.pgpair import PgPair
from tests.support.backend_api import SignedUp, asgi_client, sign_up


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


@pytest.fixture
async def api(backend_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(backend_app) as client:
        yield client


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
