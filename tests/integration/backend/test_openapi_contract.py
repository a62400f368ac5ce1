"""Schemathesis against the live OpenAPI schema: no 5xx, and every response matches the schema.

The backend runs under uvicorn on a free loopback port in a thread, on the real primary.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.specs.openapi.checks import positive_data_acceptance

from backend.app import create_app
from shared.settings import Settings

# Fuzzing examples per operation, on top of schemathesis' boundary (coverage) phase: enough
# to find a 5xx or a schema mismatch, few enough that the run stays near half a minute.
MAX_EXAMPLES = 25
MAX_EXAMPLES_IDENTITY = 10
# Cases per operation, reported at the end of the run (see conftest.pytest_terminal_summary).
GENERATED: Counter[str] = Counter()


@pytest.fixture(scope="module")
def live_backend(settings: Settings) -> Iterator[str]:
    # The fuzzer sends hundreds of calls as one user: the per-user REST limit, which has tests of
    # its own, would answer most of them 429 instead of the operation under test.
    unlimited = settings.model_copy(update={"rest_rate_limit_per_user": 0})
    config = uvicorn.Config(
        create_app(unlimited), host="127.0.0.1", port=0, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-backend", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the backend did not start under uvicorn")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def bearer(live_backend: str) -> dict[str, str]:
    """A user with a few tasks, so that generated ids sometimes name a real task."""
    email = f"fuzz-{uuid.uuid4().hex[:12]}@example.com"
    password = uuid.uuid4().hex
    with httpx.Client(base_url=live_backend, timeout=30) as http:
        http.post("/api/v1/users", json={"email": email, "password": password}).raise_for_status()
        login = http.post("/api/v1/auth/token", data={"username": email, "password": password})
        headers = {"Authorization": f"Bearer {login.raise_for_status().json()['access_token']}"}
        for i in range(5):
            http.post("/api/v1/tasks", json={"title": f"seed {i}"}, headers=headers)
    return headers


# The schema the app serves, built without a database (schemathesis.pytest.from_fixture
# would load it from the live server, but it does not work with pytest 9's node ids).
# test_served_schema_is_the_one_tested checks it is the one the live server serves.
schema = schemathesis.openapi.from_dict(create_app(Settings(_env_file=None)).openapi())


def test_served_schema_is_the_one_tested(live_backend: str) -> None:
    served = httpx.get(f"{live_backend}/openapi.json", timeout=30)
    assert served.status_code == 200
    assert served.json() == schema.raw_schema


def _call_and_validate(case: Case[Any], base_url: str, headers: dict[str, str]) -> None:
    GENERATED[f"{case.method} {case.path}"] += 1
    case.call_and_validate(
        base_url=base_url,
        headers=headers,
        timeout=30,
        # Every other check runs, negative_data_rejection included. This one assumes that
        # whatever the schema allows is accepted, which rules JSON Schema cannot state break:
        # a cursor must be one the server signed, a title must not be blank once trimmed, and
        # an email's domain must not be a special-use name such as .test or .invalid.
        excluded_checks=[positive_data_acceptance],
    )


FUZZ: dict[str, Any] = {
    "deadline": None,  # a shared, loaded machine: time is not what this test is about
    "suppress_health_check": list(HealthCheck),
    "database": None,
    "derandomize": True,  # the same cases on every run: CI fails on a change, never on luck
}
# Sign-up and login hash with argon2 on purpose (slow per call), so they get fewer examples.
IDENTITY = "^/api/v1/(users|auth)"


@schema.include(path_regex=IDENTITY).parametrize()
@settings(max_examples=MAX_EXAMPLES_IDENTITY, **FUZZ)
def test_identity_routes_honour_their_schema(
    case: Case[Any], live_backend: str, bearer: dict[str, str]
) -> None:
    _call_and_validate(case, live_backend, bearer)


@schema.exclude(path_regex=IDENTITY).parametrize()
@settings(max_examples=MAX_EXAMPLES, **FUZZ)
def test_task_and_health_routes_honour_their_schema(
    case: Case[Any], live_backend: str, bearer: dict[str, str]
) -> None:
    _call_and_validate(case, live_backend, bearer)
