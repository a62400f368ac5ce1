"""The in-memory cache is bounded in bytes, and one page over the entry cap is never cached."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import Any

import pytest
from pydantic import ValidationError

from readmodel.cache import BoundedMemoryCache, ReadCache, TtlPolicy, build_cache, encode_entry
from shared.settings import Settings

MiB = 2**20


def page(n: int, text: str) -> dict[str, Any]:
    return {
        "tasks": [{"id": i, "title": text, "description": text * 5} for i in range(n)],
        "next_cursor": None,
    }


def loader(value: Any) -> Any:
    async def load() -> Any:
        return value

    return load


async def test_one_caller_filling_distinct_keys_stays_within_the_byte_budget() -> None:
    backend = build_cache("memory://", max_bytes=2 * MiB)
    assert isinstance(backend, BoundedMemoryCache)
    cache = ReadCache(backend, TtlPolicy(600), max_entry_bytes=256 * 1024)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(2_000):  # ~40 MB of distinct 20 kB pages, as endless distinct pages would be
        value = page(10, f"\N{GRINNING FACE} {i} " * 60)
        await cache.get_or_load("list_tasks", f"list_tasks:1:0:{i}", loader(value))
        assert backend.used_bytes <= 2 * MiB
    del value
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()

    assert backend.used_bytes <= 2 * MiB
    assert held <= 2.5 * MiB, held  # what the process really holds, not only what is counted
    assert 50 < len(backend) < 2_000  # many stayed, the oldest went


async def test_the_charge_is_the_encoded_size_plus_key_and_overhead() -> None:
    backend = build_cache("memory://", max_bytes=MiB)
    assert isinstance(backend, BoundedMemoryCache)
    cache = ReadCache(backend, TtlPolicy(600))
    value = page(3, "caf\N{LATIN SMALL LETTER E WITH ACUTE} \N{ROCKET}")
    await cache.get_or_load("list_tasks", "k", loader(value))
    stored = len(encode_entry(value))
    assert stored < backend.used_bytes <= stored + len("taskgate:k") + 512


async def test_a_page_over_the_entry_cap_is_served_but_not_cached() -> None:
    backend = build_cache("memory://", max_bytes=4 * MiB)
    assert isinstance(backend, BoundedMemoryCache)
    cache = ReadCache(backend, TtlPolicy(600), max_entry_bytes=10_000)
    big = page(50, "x" * 200)
    assert len(encode_entry(big)) > 10_000
    for _ in range(3):
        assert await cache.get_or_load("list_tasks", "big", loader(big)) == big
    assert cache.stats.loads == 3 and cache.stats.oversize == 3 and cache.stats.hits == 0
    assert len(backend) == 0

    small = page(2, "x")
    for _ in range(3):
        assert await cache.get_or_load("list_tasks", "small", loader(small)) == small
    assert cache.stats.hits == 2


async def test_the_least_recently_used_entry_goes_first() -> None:
    backend = build_cache("memory://", max_bytes=MiB)
    cache = ReadCache(backend, TtlPolicy(600), max_entry_bytes=400_000)
    value = page(1, "y" * 300_000)
    value["tasks"][0]["description"] = ""  # ~300 kB an entry: three fit in 1 MiB, not four
    for key in ("a", "b", "c"):
        await cache.get_or_load("list_tasks", key, loader(value))
    await cache.get_or_load("list_tasks", "a", loader(value))  # used again: now the newest
    await cache.get_or_load("list_tasks", "d", loader(value))
    assert await backend.exists("a") and await backend.exists("d")
    assert not await backend.exists("b")


async def test_an_entry_expires_after_its_ttl() -> None:
    backend = build_cache("memory://", max_bytes=MiB)
    cache = ReadCache(backend, TtlPolicy(0.05))
    await cache.get_or_load("get_task", "k", loader({"id": 1}))
    assert await backend.exists("k")
    await asyncio.sleep(0.1)
    assert not await backend.exists("k")
    assert await cache.get_or_load("get_task", "k", loader({"id": 2})) == {"id": 2}


@pytest.mark.parametrize(
    "changes",
    [
        {"cache_max_bytes": 2**20, "cache_max_entry_bytes": 2**21},  # an entry over the budget
        {"read_pool_timeout": 1.5, "replica_timeout": 1.5},  # the read's bound would fire first
    ],
)
def test_bounds_that_cannot_hold_are_refused_at_start(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, **changes)
