"""The per-user token bucket: bursts, refill, retry-after, bounded memory, and the envelope."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mcp import Client
from prometheus_client import CollectorRegistry, Counter

from gateway.ratelimit import LOAD_BYTES_PER_TOKEN, CallLimits, LocalBuckets, load_cost
from gateway.server import build_server
from shared.call_cost import CallMeter, note_load
from shared.errors import ErrorCode, TaskgateError
from shared.settings import Settings


async def _call(limits: CallLimits, user: str | None, loaded_bytes: int | None = None) -> None:
    """One call of `user` through the limits; `loaded_bytes`: it read that from the database."""
    async with limits.admitted("list_tasks", user):
        if loaded_bytes is not None:
            note_load(loaded_bytes)


def _limits(rate: float, burst: int, in_flight: int = 0) -> tuple[CallLimits, Counter]:
    settings = Settings(
        _env_file=None,
        rate_limit_per_user=rate,
        rate_limit_burst=burst,
        rate_limit_in_flight=in_flight,
    )
    buckets = LocalBuckets(rate=rate, burst=burst) if rate > 0 else None  # 0: no bucket
    refused = Counter("taskgate_rate_limited", "test", ["tool"], registry=CollectorRegistry())
    return CallLimits(settings, lambda: buckets, refused), refused


async def test_an_uncached_large_page_costs_more_than_a_cached_hit() -> None:
    limits, _ = _limits(rate=0.001, burst=27)
    page = 64 * 1024  # a large page: 8 tokens on top of its admission
    assert load_cost(CallMeter(loads=1, loaded_bytes=page)) == page // LOAD_BYTES_PER_TOKEN == 8
    assert load_cost(CallMeter(loads=1, loaded_bytes=2000)) == 0  # a small read: as a hit
    for _ in range(3):
        await _call(limits, "flood", loaded_bytes=page)
    with pytest.raises(TaskgateError) as refusal:  # 3 x 9 tokens: the burst is spent
        await _call(limits, "flood", loaded_bytes=page)
    assert refusal.value.details["reason"] == "per_user_limit"
    for _ in range(27):  # the same burst holds 27 cached hits, or small reads
        await _call(limits, "hits", loaded_bytes=100)
    with pytest.raises(TaskgateError):
        await _call(limits, "hits")


def test_no_per_user_rate_means_no_cap_in_flight_either() -> None:
    limits, _ = _limits(rate=0, burst=1, in_flight=2)
    assert limits.in_flight.cap == 0


def test_a_charge_goes_into_debt_at_most_one_burst_deep() -> None:
    buckets = LocalBuckets(rate=2.0, burst=10)
    buckets.charge_now("7", 1_000_000, 0.0)
    assert buckets.take_now("7", 0.0) == pytest.approx((1 + 10) / 2.0)


async def test_calls_in_flight_are_capped_per_user_and_the_cap_lets_go_after() -> None:
    limits, refused = _limits(rate=1000, burst=1000, in_flight=2)
    release = asyncio.Event()
    started = asyncio.Semaphore(0)

    async def held() -> None:
        async with limits.admitted("list_tasks", "busy"):
            started.release()
            await release.wait()

    running = [asyncio.create_task(held()) for _ in range(2)]
    for _ in running:
        await started.acquire()
    with pytest.raises(TaskgateError) as refusal:
        await _call(limits, "busy")
    assert refusal.value.code == ErrorCode.RATE_LIMITED
    assert refusal.value.details == {"retry_after_seconds": 0.25, "reason": "in_flight_limit"}
    assert refused.labels("list_tasks")._value.get() == 1
    await _call(limits, "quiet")  # another user's calls are not held back
    release.set()
    await asyncio.gather(*running)
    await _call(limits, "busy")
    assert len(limits.in_flight) == 0  # no user is remembered once its calls are done


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
    await _call(limits, "5")
    await _call(limits, "5")
    with pytest.raises(TaskgateError) as refusal:
        await _call(limits, "5")
    assert refusal.value.code == ErrorCode.RATE_LIMITED
    assert 0 < refusal.value.details["retry_after_seconds"] <= 1.0
    assert refused.labels("list_tasks")._value.get() == 1
    await _call(limits, "6")  # another user is not held back
    await _call(limits, None)  # the process's configured caller (stdio)


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
