"""The login limiter's rules, on a fake clock: back-off per account and per address, a success
starts the account afresh, and its memory stays bounded against a caller who invents keys."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from backend.login_limits import LoginLimits
from shared.errors import ErrorCode, TaskgateError
from shared.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits_for(clock: Clock, **changes: Any) -> LoginLimits:
    settings = Settings(_env_file=None, **changes)
    return LoginLimits(settings, clock)


def admitted(limits: LoginLimits, email: str, address: str = "192.0.2.1", times: int = 1) -> int:
    """How many of `times` attempts in a row the limiter lets through (it stops at the first
    refusal), so a test states what it expects instead of relying on no exception."""
    for done in range(times):
        try:
            limits.begin(email, address)
        except TaskgateError as refused:
            assert refused.code is ErrorCode.RATE_LIMITED
            return done
    return times


def refused_for(limits: LoginLimits, email: str, address: str = "192.0.2.1") -> int:
    with pytest.raises(TaskgateError) as refused:
        limits.begin(email, address)
    assert refused.value.code is ErrorCode.RATE_LIMITED
    seconds = refused.value.details["retry_after_seconds"]
    assert isinstance(seconds, int) and seconds >= 1
    return seconds


def test_an_account_backs_off_after_its_free_failures_and_the_wait_doubles() -> None:
    clock = Clock()
    limits = limits_for(clock)
    for _ in range(5):
        limits.begin("victim@example.com", "192.0.2.1")  # five wrong passwords
    assert refused_for(limits, "victim@example.com") == 1
    assert refused_for(limits, "VICTIM@example.com ") == 1  # case and spaces change nothing
    clock.now += 1.0
    limits.begin("victim@example.com", "192.0.2.1")  # a sixth wrong one, after the wait
    assert refused_for(limits, "victim@example.com") == 2
    clock.now += 2.0
    limits.begin("victim@example.com", "192.0.2.1")
    assert refused_for(limits, "victim@example.com") == 4


def test_the_back_off_stops_at_its_maximum() -> None:
    clock = Clock()
    limits = limits_for(clock, login_backoff_max_seconds=60)
    waits = []
    for _ in range(40):
        try:
            limits.begin("victim@example.com", "192.0.2.1")
        except TaskgateError as refused:
            waits.append(refused.details["retry_after_seconds"])
            clock.now += refused.details["retry_after_seconds"]
    assert waits[:6] == [1, 2, 4, 8, 16, 32] and set(waits[6:]) == {60}


def test_a_success_starts_the_account_afresh_and_other_accounts_are_unaffected() -> None:
    clock = Clock()
    limits = limits_for(clock)
    assert admitted(limits, "victim@example.com", times=4) == 4
    assert admitted(limits, "other@example.com") == 1
    limits.succeeded("other@example.com", "192.0.2.1")
    assert admitted(limits, "victim@example.com") == 1
    limits.succeeded("victim@example.com", "192.0.2.1")  # the fifth was right
    # Five free failures again, then the first wait: no count was carried over.
    assert admitted(limits, "victim@example.com", times=5) == 5
    assert refused_for(limits, "victim@example.com") == 1


def test_parallel_guesses_are_counted_before_their_passwords_are_checked() -> None:
    limits = limits_for(Clock())
    # None of the five has finished (no success or failure reported), yet the sixth waits.
    assert admitted(limits, "victim@example.com", times=5) == 5
    assert refused_for(limits, "victim@example.com") == 1


def test_one_address_backs_off_across_many_accounts_and_others_are_unaffected() -> None:
    limits = limits_for(Clock(), login_address_failures=10)
    for n in range(10):
        assert admitted(limits, f"user{n}@example.com", "198.51.100.7") == 1
    assert refused_for(limits, "fresh@example.com", "198.51.100.7") == 1
    assert admitted(limits, "fresh@example.com", "198.51.100.8") == 1


def test_the_tables_stay_bounded_against_a_caller_who_invents_keys() -> None:
    clock = Clock()
    limits = limits_for(clock, login_limit_entries=2000)
    tracemalloc.start()
    try:
        for n in range(20_000):
            limits.begin(
                f"{n}{'x' * 300}@example.com", f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"
            )
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert limits.tracked() == (2000, 2000)
    # Two tables of 2000 entries; a long email costs what a short one does (a 16-byte digest).
    assert size < 2 * 2000 * 450, size


def test_failures_are_forgotten_after_the_window() -> None:
    clock = Clock()
    limits = limits_for(clock, login_failure_window_seconds=900, login_backoff_max_seconds=900)
    assert admitted(limits, "victim@example.com", times=5) == 5
    refused_for(limits, "victim@example.com")
    clock.now += 901
    # A fresh count: five free failures, then the first wait, as for a new account.
    assert admitted(limits, "victim@example.com", times=5) == 5
    assert refused_for(limits, "victim@example.com") == 1
