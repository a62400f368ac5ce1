"""Waits on a condition, never on a fixed sleep: a busy machine makes every step slower, so a
test polls for what it expects and gives up only after a bound far above any quiet-machine run."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

# Only a failing test waits this long; a passing one returns as soon as its condition holds.
WAIT_SECONDS = 60.0
_POLL_SECONDS = 0.02
# A read that must answer rather than hang: REPLICA_TIMEOUT (1.5 s) ends it, and the bound
# leaves room for a busy machine, where a fixed second or two is not enough.
ANSWER_BOUND_SECONDS = 15.0


def wait_until(check: Callable[[], object], what: str, within: float = WAIT_SECONDS) -> None:
    """Polls `check` until it returns something true; fails the test, naming `what`, if it
    never does in `within` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:g} s")
        time.sleep(_POLL_SECONDS)


async def eventually(
    check: Callable[[], object | Awaitable[object]], what: str, within: float = WAIT_SECONDS
) -> None:
    """`wait_until` for a test on an event loop: `check` may be a coroutine function, and the
    loop keeps running between polls."""
    deadline = time.monotonic() + within
    while True:
        outcome = check()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:g} s")
        await asyncio.sleep(_POLL_SECONDS)
