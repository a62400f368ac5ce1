"""ReadCache over aiocache's memory backend: single flight, TTLs, faults."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiocache import SimpleMemoryCache

from readmodel.cache import ReadCache, TtlPolicy, build_cache


class Loader:
    def __init__(self, value: Any = "value", delay: float = 0.01) -> None:
        self.calls = 0
        self.value = value
        self.delay = delay

    async def __call__(self) -> Any:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


class BrokenCache(SimpleMemoryCache):  # type: ignore[misc]
    """A backend whose every operation fails, as a Redis that went away does."""

    async def _get(self, *args: Any, **kwargs: Any) -> Any:
        self.gets = getattr(self, "gets", 0) + 1
        raise ConnectionError("gone")

    async def _set(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("gone")


def _cache(ttl: float = 60, overrides: dict[str, float] | None = None) -> ReadCache:
    return ReadCache(build_cache("memory://"), TtlPolicy(ttl, overrides))


async def test_concurrent_misses_on_one_key_share_one_load() -> None:
    cache, load = _cache(), Loader()
    values = await asyncio.gather(*(cache.get_or_load("get_task", "k", load) for _ in range(100)))
    assert values == ["value"] * 100
    assert load.calls == 1
    assert cache.stats.as_dict() == {
        "hits": 0,
        "misses": 100,
        "errors": 0,
        "loads": 1,
        "oversize": 0,
    }
    assert await cache.get_or_load("get_task", "k", load) == "value"
    assert cache.stats.hits == 1


async def test_different_keys_load_separately() -> None:
    cache, load = _cache(), Loader()
    await asyncio.gather(*(cache.get_or_load("get_task", f"k{i}", load) for i in range(5)))
    assert load.calls == 5


async def test_a_failed_load_reaches_every_waiter_and_is_not_cached() -> None:
    cache, failing = _cache(), Loader(RuntimeError("replica down"))
    results = await asyncio.gather(
        *(cache.get_or_load("get_task", "k", failing) for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert failing.calls == 1
    assert await cache.get_or_load("get_task", "k", Loader("fresh")) == "fresh"


async def test_a_caller_that_gives_up_does_not_cancel_the_shared_load() -> None:
    cache, load = _cache(), Loader(delay=0.1)
    impatient = asyncio.create_task(cache.get_or_load("get_task", "k", load))
    patient = asyncio.create_task(cache.get_or_load("get_task", "k", load))
    await asyncio.sleep(0.01)
    impatient.cancel()
    assert await patient == "value"
    assert load.calls == 1


async def test_ttl_zero_loads_every_time_and_overrides_apply_per_tool() -> None:
    cache, load = _cache(ttl=60, overrides={"list_tasks": 0}), Loader()
    for _ in range(3):
        await cache.get_or_load("list_tasks", "a", load)
    assert load.calls == 3
    for _ in range(3):
        await cache.get_or_load("get_task", "b", load)
    assert load.calls == 4
    cache.ttl.default = 0  # what an operator's run-time change does
    await cache.get_or_load("get_task", "c", load)
    await cache.get_or_load("get_task", "c", load)
    assert load.calls == 6


async def test_entries_expire_after_their_ttl() -> None:
    cache, load = _cache(ttl=0.05), Loader()
    await cache.get_or_load("get_task", "k", load)
    await asyncio.sleep(0.1)
    await cache.get_or_load("get_task", "k", load)
    assert load.calls == 2


async def test_a_failing_backend_degrades_to_loads_and_backs_off() -> None:
    backend = BrokenCache()
    cache, load = ReadCache(backend, TtlPolicy(60)), Loader()
    assert await cache.get_or_load("get_task", "k", load) == "value"
    assert await cache.get_or_load("get_task", "k", load) == "value"
    assert load.calls == 2
    assert cache.stats.errors == 1  # the second read skipped the backend while backing off
    assert backend.gets == 1
    assert not cache.reachable


@pytest.mark.parametrize("tool", ["list_tasks", "get_task", "get_user_stats"])
def test_ttl_policy_falls_back_to_the_default(tool: str) -> None:
    policy = TtlPolicy(5, {"get_task": 30})
    assert policy.ttl_for(tool) == (30 if tool == "get_task" else 5)


async def test_flush_keeps_keys_of_other_namespaces() -> None:
    cache = _cache()
    await cache.cache.set("ttl-policy", {"cache_ttl": 9}, namespace="taskgate-admin:")
    await cache.flush()
    assert await cache.cache.get("ttl-policy", namespace="taskgate-admin:") == {"cache_ttl": 9}
