"""The per-user token bucket: bursts, refill, retry-after, bounded memory, and the envelope."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from prometheus_client import CollectorRegistry, Counter

from gateway.ratelimit import CallLimits, LocalBuckets
from gateway.server import build_server
from shared.errors import ErrorCode, TaskgateError
from shared.settings import Settings


def test_a_bucket_allows_its_burst_then_names_the_wait() -> None:
    buckets = LocalBuckets(rate=2.0, burst=3)
    assert [buckets.take_now("7", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take_now("7", 100.0) == pytest.approx(0.5)
    assert buckets.take_now("7", 100.25) == pytest.approx(0.25)  # half a token refilled


def test_a_bucket_refills_at_the_rate_and_never_past_the_burst() -> None:
    buckets = LocalBuckets(rate=2.0, burst=3)
    for _ in range(3):
        buckets.take_now("7", 0.0)
    assert buckets.take_now("7", 0.5) == 0.0  # one token back after 1/rate seconds
    assert buckets.take_now("7", 0.5) > 0
    for _ in range(3):
        assert buckets.take_now("7", 1000.0) == 0.0  # a long pause refills to the burst only
    assert buckets.take_now("7", 1000.0) > 0


def test_one_users_empty_bucket_leaves_anothers_full() -> None:
    buckets = LocalBuckets(rate=1.0, burst=2)
    for _ in range(2):
        buckets.take_now("hog", 0.0)
    assert buckets.take_now("hog", 0.0) > 0
    assert buckets.take_now("quiet", 0.0) == 0.0


def test_the_in_process_buckets_are_bounded_in_number() -> None:
    buckets = LocalBuckets(rate=1.0, burst=1, max_users=100)
    for user in range(10_000):
        buckets.take_now(str(user), 0.0)
    assert len(buckets) == 100


async def test_a_refusal_is_rate_limited_with_retry_after_and_counted() -> None:
    settings = Settings(
        _env_file=None,
        auth_mode="user_param",
        rate_limit_per_user=1.0,
        rate_limit_burst=2,
    )
    buckets = LocalBuckets(rate=1.0, burst=2)
    refused = Counter("taskgate_rate_limited", "test", ["tool"], registry=CollectorRegistry())
    limits = CallLimits(settings, lambda: buckets, refused)
    await limits.admit("list_tasks", "5")
    await limits.admit("list_tasks", "5")
    with pytest.raises(TaskgateError) as refusal:
        await limits.admit("list_tasks", "5")
    assert refusal.value.code == ErrorCode.RATE_LIMITED
    assert 0 < refusal.value.details["retry_after_seconds"] <= 1.0
    assert refused.labels("list_tasks")._value.get() == 1
    await limits.admit("list_tasks", "6")  # another user is not held back
    await limits.admit("list_tasks", None)  # the process's configured caller (stdio)


async def test_the_gateway_answers_the_envelope_for_a_user_over_the_limit() -> None:
    settings = Settings(
        _env_file=None,
        auth_mode="user_param",
        rate_limit_per_user=0.01,
        rate_limit_burst=2,
        read_database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none",
    )
    server, _ = build_server(settings)
    async with Client(server) as client:
        answers: list[Any] = []
        for _ in range(3):
            # An unknown argument is refused without touching the database, after the limit.
            result = await client.call_tool("get_user_stats", {"user_id": 9, "x": 1})
            answers.append(result.content[0].text)  # type: ignore[union-attr]
    assert '"validation_error"' in answers[0] and '"validation_error"' in answers[1]
    assert '"rate_limited"' in answers[2] and "retry_after_seconds" in answers[2]
