"""An app in-process over ASGI (the backend's, or the gateway's HTTP app), and users signed up
through the backend's REST API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette


def asgi_client(app: Starlette, base_url: str = "http://backend.test") -> httpx.AsyncClient:
    """A client that calls the app in-process; it keeps cookies like a browser."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@asynccontextmanager
async def app_running(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client on it (as from 127.0.0.1).

    Entered inside each test, not in a fixture: the lifespan holds an anyio cancel scope, which
    must be left in the task that entered it.
    """
    async with app.router.lifespan_context(app), asgi_client(app, "http://127.0.0.1") as client:
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
