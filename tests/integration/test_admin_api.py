"""The gateway's admin API, in process, on the real replica: auth, TTL changes, their logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from gateway.server import build_http_app
from readmodel.replicas import replica_labels
from readmodel.ttl import POLICY_REDIS_KEY
from shared.settings import Settings
from tests.support.backend_api import app_running
from tests.support.ports import free_port
from tests.support.redis import RedisServer, running_redis
from tests.support.waiting import eventually

ADMIN_TOKEN = "admin-Kp8wR3zN6xLq2VmT9bH4cJ7dF1sG5yA0"  # random: the weak-secret guard


def running_gateway(settings: Settings) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    """The gateway's HTTP app with its lifespan running, and a client on it."""
    return app_running(build_http_app(settings))


def gateway_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(
        update={
            "admin_token": SecretStr(ADMIN_TOKEN),
            # Nothing listens there: readiness must say the backend is down.
            "fastapi_base_url": f"http://127.0.0.1:{free_port()}",
            **changes,
        }
    )


def admin(actor: str = "ops-alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Admin-Actor": actor}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


def assert_envelope(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body: dict[str, Any] = reply.json()
    assert body["status"] == "error"
    assert body["error_code"] == code
    assert set(body) == {"status", "error_code", "message", "details"}
    return body


async def test_admin_api_is_off_while_admin_token_is_unset(settings: Settings) -> None:
    async with running_gateway(gateway_settings(settings, admin_token=None)) as client:
        reply = await client.get("/admin/cache", headers=admin())
    assert_envelope(reply, 404, "not_found")


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Basic {ADMIN_TOKEN}", f"Bearer {ADMIN_TOKEN}x", "Bearer "],
)
async def test_admin_api_refuses_a_missing_or_wrong_token(
    settings: Settings, authorization: str | None
) -> None:
    async with running_gateway(gateway_settings(settings)) as gateway:
        headers = {"Authorization": authorization} if authorization else {}
        reply = await gateway.put("/admin/cache/ttl", json={"ttl": 1}, headers=headers)
        body = assert_envelope(reply, 401, "unauthorized")
        assert reply.headers["WWW-Authenticate"] == "Bearer"
        assert ADMIN_TOKEN not in reply.text and ADMIN_TOKEN not in str(body)


async def test_operator_sets_the_global_and_a_per_tool_ttl_and_reads_them_back(
    settings: Settings,
) -> None:
    async with running_gateway(gateway_settings(settings)) as gateway:
        before = (await gateway.get("/admin/cache", headers=admin())).json()
        assert before["effective_ttl"]["list_tasks"] == settings.cache_ttl

        reply = await gateway.put("/admin/cache/ttl", json={"ttl": 42}, headers=admin())
        assert reply.status_code == 200, reply.text
        assert (reply.json()["old"], reply.json()["new"]) == (settings.cache_ttl, 42)

        reply = await gateway.put(
            "/admin/cache/ttl", json={"ttl": 0, "tool": "get_task"}, headers=admin()
        )
        assert (reply.json()["tool"], reply.json()["old"], reply.json()["new"]) == (
            "get_task",
            None,
            0,
        )

        shown = (await gateway.get("/admin/cache", headers=admin())).json()
        assert shown["ttl"] == {"cache_ttl": 42, "overrides": {"get_task": 0}}
        assert shown["effective_ttl"] == {"list_tasks": 42, "get_task": 0, "get_user_stats": 42}
        assert shown["shared"] is False

        # The TTLs in force are also what /metrics reports.
        scraped = (await gateway.get("/metrics")).text
        ttls = {
            sample.labels["tool"]: sample.value
            for family in text_string_to_metric_families(scraped)
            if family.name == "taskgate_cache_ttl_seconds"
            for sample in family.samples
        }
        assert ttls == shown["effective_ttl"]

        reply = await gateway.put(
            "/admin/cache/ttl", json={"ttl": None, "tool": "get_task"}, headers=admin()
        )
        assert reply.json()["effective_ttl"]["get_task"] == 42


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"ttl": -1}', "ttl"),
        ('{"ttl": "soon"}', "ttl"),
        ('{"ttl": 1e999}', "ttl"),
        ('{"ttl": 999999999}', "ttl"),
        ('{"ttl": 5, "tool": "create_task"}', "tool"),
        ('{"ttl": 5, "tols": "get_task"}', "tols"),
        ('{"tool": "get_task"}', "ttl"),
        ('{"ttl": null}', "ttl"),
        ("not json", ""),
        ("[]", ""),
    ],
)
async def test_bad_ttl_requests_get_the_validation_envelope(
    settings: Settings, body: str, field: str
) -> None:
    async with running_gateway(gateway_settings(settings)) as gateway:
        reply = await gateway.put(
            "/admin/cache/ttl",
            content=body,
            headers={**admin(), "Content-Type": "application/json"},
        )
        envelope = assert_envelope(reply, 422, "validation_error")
        assert field in [error["field"] for error in envelope["details"]["errors"]]
        unchanged = (await gateway.get("/admin/cache", headers=admin())).json()
        assert unchanged["ttl"]["overrides"] == {}


async def test_wrong_method_and_oversized_body_get_the_envelope(settings: Settings) -> None:
    async with running_gateway(gateway_settings(settings)) as gateway:
        reply = await gateway.get("/admin/cache/ttl", headers=admin())
        assert assert_envelope(reply, 400, "bad_request")["details"]["allowed"] == ["PUT"]
        reply = await gateway.put(
            "/admin/cache/ttl",
            content=b'{"ttl": 1, "x": "' + b"a" * 10_000 + b'"}',
            headers=admin(),
        )
        assert_envelope(reply, 400, "bad_request")


async def test_each_change_is_logged_with_who_made_it_and_old_and_new_values(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_gateway(gateway_settings(settings)) as gateway:
        with caplog.at_level(logging.INFO, logger="gateway.admin"):
            await gateway.put("/admin/cache/ttl", json={"ttl": 7}, headers=admin("ops-bob"))
            await gateway.put(
                "/admin/cache/ttl", json={"ttl": 3, "tool": "list_tasks"}, headers=admin("ops-bob")
            )
            await gateway.post("/admin/cache/flush", headers=admin("ops-carol"))
        changes = [r for r in caplog.records if r.name == "gateway.admin"]
        assert [(r.__dict__["actor"].split("@")[0], r.__dict__.get("tool")) for r in changes] == [
            ("ops-bob", "global"),
            ("ops-bob", "list_tasks"),
            ("ops-carol", None),
        ]
        assert (changes[0].__dict__["old"], changes[0].__dict__["new"]) == (5.0, 7)
        assert (changes[1].__dict__["old"], changes[1].__dict__["new"]) == (None, 3)
        assert all(ADMIN_TOKEN not in r.getMessage() for r in caplog.records)


async def test_readyz_names_what_is_down_and_healthz_stays_up(settings: Settings) -> None:
    async with running_gateway(gateway_settings(settings)) as gateway:
        assert (await gateway.get("/healthz")).status_code == 200
        reply = await gateway.get("/readyz")
        assert reply.status_code == 503
        assert reply.json() == {
            "status": "unavailable",
            "checks": {"replica": "up", "backend": "down", "cache": "up"},
            "replicas": {replica_labels([settings.read_database_url])[0]: "up"},
        }


async def test_ttl_change_through_one_gateway_reaches_another_on_the_same_redis(
    settings: Settings, redis_server: RedisServer
) -> None:
    shared = gateway_settings(
        settings, cache_url=redis_server.url, cache_ttl_sync_seconds=0.05, cache_ttl=5.0
    )
    async with running_gateway(shared) as one, running_gateway(shared) as two:
        reply = await one.put(
            "/admin/cache/ttl", json={"ttl": 11, "tool": "get_user_stats"}, headers=admin()
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["shared"] is True
        seen = await wait_for_ttl(two, "get_user_stats", 11)
        assert seen["ttl"] == {"cache_ttl": 5.0, "overrides": {"get_user_stats": 11.0}}

        # A gateway that starts later joins the policy the operators set.
        async with running_gateway(shared) as three:
            shown = (await three.get("/admin/cache", headers=admin())).json()
            assert shown["effective_ttl"]["get_user_stats"] == 11

        # A flush drops cached reads, not the policy.
        await two.post("/admin/cache/flush", headers=admin())
        await one.put("/admin/cache/ttl", json={"ttl": 9}, headers=admin())
        seen = await wait_for_ttl(two, "list_tasks", 9)
        assert seen["ttl"] == {"cache_ttl": 9.0, "overrides": {"get_user_stats": 11.0}}


async def wait_for_ttl(client: httpx.AsyncClient, tool: str, ttl: float) -> dict[str, Any]:
    """Poll the admin API until the TTL shows; returns what it showed then."""
    shown: dict[str, Any] = {}

    async def showing() -> bool:
        shown.update((await client.get("/admin/cache", headers=admin())).json())
        return bool(shown["effective_ttl"][tool] == ttl)

    await eventually(showing, f"{tool} at TTL {ttl}")
    return shown


@pytest.mark.parametrize(
    "stored",
    [b"not json", b'{"cache_ttl": -5, "overrides": {}}', b'{"cache_ttl": 3}', b"[1, 2]"],
)
async def test_gateways_ignore_a_damaged_shared_policy_and_an_operator_replaces_it(
    settings: Settings, redis_server: RedisServer, stored: bytes
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.set(POLICY_REDIS_KEY, stored)
        shared = gateway_settings(settings, cache_url=redis_server.url, cache_ttl=4.0)
        async with running_gateway(shared) as gateway:
            shown = (await gateway.get("/admin/cache", headers=admin())).json()
            assert shown["ttl"] == {"cache_ttl": 4.0, "overrides": {}}
            reply = await gateway.put("/admin/cache/ttl", json={"ttl": 6}, headers=admin())
            assert reply.status_code == 200, reply.text
        assert json.loads(client.get(POLICY_REDIS_KEY) or b"") == {
            "cache_ttl": 6,
            "overrides": {},
        }
    finally:
        client.delete(POLICY_REDIS_KEY)
        client.close()
