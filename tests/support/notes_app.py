"""The notes example app (examples/notes) as processes: the app under uvicorn, and gateways
that serve it by its spec, on a cluster of their own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jwt

from taskgate.devstack import Component
from tests.support.served_app_processes import running_app, spawn_spec_gateway

NOTES_DIR = Path(__file__).resolve().parents[2] / "examples" / "notes"
NOTES_SPEC = f"{NOTES_DIR / 'notes_spec'}:SPEC"
NOTES_SECRET = "notes-Qm7Rz2Kx9Lp4Vt8Wb3Nh6Cj1Df5Gy0Sa"  # random: the gateway refuses weak ones
SERVICE_USER, SERVICE_PASSWORD = "taskgate-service", "service-password-for-tests"


def notes_env(database_url: str) -> dict[str, str]:
    """What the app reads, and what the gateway's spec reads of it (secrets, auth choice)."""
    return {
        "NOTES_SECRET": NOTES_SECRET,
        "DATABASE_URL": database_url,
        "NOTES_SERVICE_USER": SERVICE_USER,
        "NOTES_SERVICE_PASSWORD": SERVICE_PASSWORD,
    }


def agent_token(user_id: int) -> str:
    """A token of the notes app's own kind for one user (its `uid` claim)."""
    return jwt.encode({"uid": user_id, "exp": int(time.time()) + 3600}, NOTES_SECRET, "HS256")


@contextmanager
def running_notes_app(database_url: str, commit_lsn: bool = True) -> Iterator[str]:
    """The notes app under uvicorn, from its own folder; yields its base URL."""
    env = {**notes_env(database_url), "NOTES_COMMIT_LSN": "1" if commit_lsn else "0"}
    args = ["backend.main:app", "--app-dir", str(NOTES_DIR)]
    with running_app("notes app", args, NOTES_DIR, env, "/healthz") as url:
        yield url


def spawn_notes_gateway(env: dict[str, str]) -> tuple[Component, str]:
    """A gateway serving the notes spec with `env` (FASTAPI_BASE_URL, READ_DATABASE_URLS, ...)."""
    return spawn_spec_gateway("notes gateway", NOTES_SPEC, env)
