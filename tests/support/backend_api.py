"""The backend app in-process over ASGI, and users signed up through it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
from fastapi import FastAPI


def asgi_client(app: FastAPI) -> httpx.AsyncClient:
    """A client that calls the app in-process; it keeps cookies like a browser."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://backend.test")


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
