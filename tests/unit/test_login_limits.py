"""The login limiter's rules, on a fake clock: back-off per account and per address counted from
failures only, a success that never renews a wait, a device cookie that keeps its own allowance,
and memory that stays bounded against a caller who invents keys."""

from __future__ import annotations

import asyncio
import tracemalloc
from typing import Any

import pytest

from backend.login_limits import LoginClient, LoginLimits
from shared.errors import ErrorCode, TaskgateError
from shared.settings import Settings

HERE = LoginClient("192.0.2.1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits_for(clock: Clock, **changes: Any) -> LoginLimits:
    settings = Settings(_env_file=None, **changes)
    return LoginLimits(settings, clock)


async def _wrong() -> None:
    raise TaskgateError(ErrorCode.UNAUTHORIZED, "email or password is wrong")


async def _right() -> str:
    return "user"


def fail(limits: LoginLimits, email: str, client: LoginClient = HERE) -> None:
    with pytest.raises(TaskgateError) as failed:
        asyncio.run(limits.attempt(email, client, _wrong))
    assert failed.value.code is ErrorCode.UNAUTHORIZED, failed.value.message


def succeed(limits: LoginLimits, email: str, client: LoginClient = HERE) -> None:
    assert asyncio.run(limits.attempt(email, client, _right)) == "user"


def refused_for(limits: LoginLimits, email: str, client: LoginClient = HERE) -> int:
    with pytest.raises(TaskgateError) as refused:
        asyncio.run(limits.attempt(email, client, _right))
    assert refused.value.code is ErrorCode.RATE_LIMITED
    seconds = refused.value.details["retry_after_seconds"]
    assert isinstance(seconds, int) and seconds >= 1
    return seconds


def test_an_account_backs_off_after_its_free_failures_and_the_wait_doubles() -> None:
    clock = Clock()
    limits = limits_for(clock)
    for _ in range(5):
        fail(limits, "victim@example.com")
    assert refused_for(limits, "victim@example.com") == 1
    assert refused_for(limits, "VICTIM@example.com ") == 1  # case and spaces change nothing
    clock.now += 1.0
    fail(limits, "victim@example.com")  # a sixth wrong one, after the wait
    assert refused_for(limits, "victim@example.com") == 2
    clock.now += 2.0
    fail(limits, "victim@example.com")
    assert refused_for(limits, "victim@example.com") == 4


def test_the_back_off_stops_at_its_maximum() -> None:
    clock = Clock()
    limits = limits_for(clock, login_backoff_max_seconds=60)
    waits = []
    for _ in range(40):
        try:
            asyncio.run(limits.attempt("victim@example.com", HERE, _wrong))
        except TaskgateError as refused:
            if refused.code is ErrorCode.RATE_LIMITED:
                waits.append(refused.details["retry_after_seconds"])
                clock.now += refused.details["retry_after_seconds"]
    assert waits[:6] == [1, 2, 4, 8, 16, 32] and set(waits[6:]) == {60}


def test_a_success_never_renews_the_address_back_off() -> None:
    clock = Clock()
    limits = limits_for(clock, login_address_failures=50)
    failures = 0
    while failures < 55:  # as the attack: 55 wrong passwords over many accounts, one address
        try:
            asyncio.run(limits.attempt(f"guess{failures}@example.com", HERE, _wrong))
        except TaskgateError as exc:
            if exc.code is ErrorCode.RATE_LIMITED:
                clock.now += exc.details["retry_after_seconds"]
            else:
                failures += 1
    wait = refused_for(limits, "alice@example.com")
    clock.now += wait
    # Once the wait is over, every right password gets in, one after another.
    for name in ("alice", "bob", "carol", "dave"):
        succeed(limits, f"{name}@example.com")


def test_a_success_starts_the_account_afresh_and_other_accounts_are_unaffected() -> None:
    limits = limits_for(Clock())
    for _ in range(4):
        fail(limits, "victim@example.com")
    succeed(limits, "other@example.com")
    succeed(limits, "victim@example.com")  # the fifth was right
    for _ in range(4):
        fail(limits, "victim@example.com")
    succeed(limits, "victim@example.com")


def test_parallel_guesses_are_counted_before_their_passwords_are_checked() -> None:
    limits = limits_for(Clock())

    async def guesses() -> list[object]:
        release = asyncio.Event()

        async def slow_wrong() -> None:
            await release.wait()
            await _wrong()

        started = [
            asyncio.create_task(limits.attempt("victim@example.com", HERE, slow_wrong))
            for _ in range(5)
        ]
        await asyncio.sleep(0)
        sixth = limits.attempt("victim@example.com", HERE, _right)
        outcome: list[object] = []
        try:
            await sixth
        except TaskgateError as refused:
            outcome.append(refused.code)
        release.set()
        outcome += await asyncio.gather(*started, return_exceptions=True)
        return outcome

    outcome = asyncio.run(guesses())
    assert outcome[0] is ErrorCode.RATE_LIMITED  # five in flight: the sixth waits its turn


def test_one_address_backs_off_across_many_accounts_and_others_are_unaffected() -> None:
    limits = limits_for(Clock(), login_address_failures=10)
    for n in range(10):
        fail(limits, f"user{n}@example.com", LoginClient("198.51.100.7"))
    refused_for(limits, "fresh@example.com", LoginClient("198.51.100.7"))
    succeed(limits, "fresh@example.com", LoginClient("198.51.100.8"))


def test_a_known_device_logs_in_while_its_account_and_address_are_attacked() -> None:
    clock = Clock()
    limits = limits_for(clock, login_address_failures=10)
    cookie = limits.device_cookie("victim@example.com")
    device = LoginClient("198.51.100.7", cookie)
    for n in range(10):
        fail(limits, f"user{n}@example.com", LoginClient("198.51.100.7"))
    for _ in range(5):
        fail(limits, "victim@example.com", LoginClient("203.0.113.9"))
    refused_for(limits, "victim@example.com", LoginClient("198.51.100.7"))
    succeed(limits, "victim@example.com", device)
    # The cookie is for this account only, and a forged one counts for nothing.
    refused_for(limits, "user1@example.com", LoginClient("198.51.100.7", cookie))
    refused_for(limits, "victim@example.com", LoginClient("198.51.100.7", cookie[:-2] + "AA"))
    # A device that fails as often as an account may backs off too.
    for _ in range(5):
        fail(limits, "victim@example.com", device)
    refused_for(limits, "victim@example.com", device)


def test_the_tables_stay_bounded_against_a_caller_who_invents_keys() -> None:
    limits = limits_for(Clock(), login_limit_entries=2000)

    async def invent_keys() -> None:
        for n in range(20_000):
            address = f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"
            with pytest.raises(TaskgateError):
                await limits.attempt(f"{n}{'x' * 300}@example.com", LoginClient(address), _wrong)

    tracemalloc.start()
    try:
        asyncio.run(invent_keys())
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert limits.tracked() == (2000, 2000)
    # Two tables of 2000 entries; a long email costs what a short one does (a 16-byte digest).
    assert size < 2 * 2000 * 450, size


def test_failures_are_forgotten_after_the_window() -> None:
    clock = Clock()
    limits = limits_for(clock, login_failure_window_seconds=900, login_backoff_max_seconds=900)
    for _ in range(5):
        fail(limits, "victim@example.com")
    refused_for(limits, "victim@example.com")
    clock.now += 901
    for _ in range(4):  # a fresh count: four are free again
        fail(limits, "victim@example.com")
    succeed(limits, "victim@example.com")
