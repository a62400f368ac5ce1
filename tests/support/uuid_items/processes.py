"""The UUID items app (tests/support/uuid_items) as processes: the app under uvicorn, and
gateways that serve it by its spec."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jwt

from taskgate.devstack import Component
from tests.support.served_app_processes import running_app, spawn_spec_gateway

REPO = Path(__file__).resolve().parents[3]
ITEMS_SPEC = "tests.support.uuid_items.spec:SPEC"
ITEMS_SECRET = "items-Vb8Qz3Lm6Ws1Xc4Rt7Yp2Nk5Jh9Gd0Fa"  # random: the gateway refuses weak ones
SERVICE_USER, SERVICE_PASSWORD = "items-service", "service-password-for-tests"


def items_env(database_url: str) -> dict[str, str]:
    """What the app reads, and what the gateway's spec reads of it (secrets, auth choice)."""
    return {
        "ITEMS_SECRET": ITEMS_SECRET,
        "DATABASE_URL": database_url,
        "ITEMS_SERVICE_USER": SERVICE_USER,
        "ITEMS_SERVICE_PASSWORD": SERVICE_PASSWORD,
    }


def agent_token(sub: str) -> str:
    """A token of the app's own kind, as the template issues them: the user's UUID in `sub`."""
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 3600}, ITEMS_SECRET, "HS256")


@contextmanager
def running_items_app(database_url: str) -> Iterator[str]:
    """The app under uvicorn, from the repository's root; yields its base URL."""
    args = ["tests.support.uuid_items.app:app"]
    health = "/api/v1/utils/health-check/"
    with running_app("uuid items app", args, REPO, items_env(database_url), health) as url:
        yield url


def spawn_items_gateway(env: dict[str, str]) -> tuple[Component, str]:
    """A gateway serving the items spec with `env` (FASTAPI_BASE_URL, READ_DATABASE_URLS, ...)."""
    return spawn_spec_gateway("uuid items gateway", ITEMS_SPEC, env)
