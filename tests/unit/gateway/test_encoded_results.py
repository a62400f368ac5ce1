"""Replies encoded once per cache entry: the SDK's bytes, a memo bounded in bytes, never stale."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult

from gateway.encoded_results import ReplyEncoder
from gateway.sdk_fence import Reply, ReplyWriter, body_of
from gateway.server import build_server
from readmodel.cache import encode_entry
from readmodel.reader import CachedRead
from shared.settings import Settings


def _page(n: int, title: str = "t") -> dict[str, Any]:
    tasks = [
        {
            "id": i,
            "user_id": 1,
            "title": f"{title} {i}",
            "description": None,
            "completed": False,
            "created_at": "2026-01-01T00:00:00+00:00",
            "updated_at": "2026-01-01T00:00:00+00:00",
        }
        for i in range(n)
    ]
    return {"tasks": tasks, "next_cursor": None}


def _encoder(max_bytes: int) -> tuple[ReplyEncoder, Tool]:
    server, _ = build_server(Settings(_env_file=None))
    tool = server._tool_manager.get_tool("list_tasks")
    assert tool is not None
    return ReplyEncoder.of(server, max_bytes), tool


async def test_a_reply_carries_the_callers_id_in_the_sdks_spelling() -> None:
    encoder, tool = _encoder(2**20)
    hit = CachedRead("list_tasks:1:0:x", encode_entry(_page(2)))
    cases: list[tuple[str, str | int]] = [
        ("2025-06-18", "ü\u0007"),
        ("2026-07-28", "ü\u0007"),
        ("2026-07-28", 7),
    ]
    for version, rid in cases:
        reply = await encoder.cached(hit, version, tool.fn_metadata.convert_result)
        message = json.loads(body_of(reply, version, rid))
        assert message["id"] == rid
        titles = [t["title"] for t in message["result"]["structuredContent"]["tasks"]]
        assert titles == ["t 0", "t 1"]
    modern = await encoder.cached(hit, "2026-07-28", tool.fn_metadata.convert_result)
    assert b'"\\u00fc\\u0007"' in body_of(modern, "2026-07-28", "ü\u0007")  # json.dumps: ASCII


async def test_a_reloaded_entry_is_encoded_again_not_served_from_the_memo() -> None:
    encoder, tool = _encoder(2**20)
    convert = tool.fn_metadata.convert_result
    old = await encoder.cached(
        CachedRead("k", encode_entry(_page(1, "old"))), "2026-07-28", convert
    )
    new = await encoder.cached(
        CachedRead("k", encode_entry(_page(1, "new"))), "2026-07-28", convert
    )
    assert b"old 0" in old.tail and b"new 0" in new.tail and b"old" not in new.tail


async def test_one_hostile_caller_cannot_grow_the_memo_past_its_bound() -> None:
    bound = 256 * 1024
    encoder, tool = _encoder(bound)
    stored = encode_entry(_page(20))
    for i in range(500):  # as many distinct pages as a caller likes: cursors, limits, statuses
        hit = CachedRead(f"list_tasks:1:0:{i}", stored)
        await encoder.cached(hit, "2026-07-28", tool.fn_metadata.convert_result)
        assert encoder.used_bytes <= bound
    assert 0 < len(encoder) < 500


async def test_the_memo_charges_at_least_the_memory_its_entries_hold() -> None:
    """Honest bytes: what the memo's entries keep alive (measured by tracemalloc: keys, cached
    and encoded bytes, objects, the LRU's slots) is no more than the bytes it charges, for the
    smallest pages, where the fixed overhead weighs most."""
    for version in ("2025-06-18", "2026-07-28"):
        encoder, tool = _encoder(2**30)
        convert = tool.fn_metadata.convert_result
        page: dict[str, Any] = {"tasks": [], "next_cursor": None}
        await encoder.cached(CachedRead("warm", encode_entry(page)), version, convert)
        entries = 3000
        tracemalloc.start()
        try:
            held, charged = tracemalloc.get_traced_memory()[0], encoder.used_bytes
            for i in range(entries):  # each hit's own key and bytes, as a Redis cache gives them
                key = f"list_tasks:{i}:0:" + json.dumps(["all", 20, None])
                await encoder.cached(CachedRead(key, encode_entry(page)), version, convert)
            held = tracemalloc.get_traced_memory()[0] - held
        finally:
            tracemalloc.stop()
        assert len(encoder) == entries + 1
        assert held <= encoder.used_bytes - charged, (version, held / entries)


async def test_a_miss_encoded_once_is_the_writers_own_reply_byte_for_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoder, tool = _encoder(2**20)
    # Titles each era's encoder spells its own way, and ones that spell the stand-ins.
    titles = ['ü ✓ "q" \\ \u2028', "taskgate-fast-path-text", "taskgate-fast-path-structured"]
    results = [tool.fn_metadata.convert_result(_page(3, title)) for title in titles]
    encoded: list[CallToolResult] = []
    whole_encode = ReplyWriter.encode

    async def spied(self: ReplyWriter, result: CallToolResult, version: str) -> Reply:
        encoded.append(result)
        return await whole_encode(self, result, version)

    monkeypatch.setattr(ReplyWriter, "encode", spied)
    for version in ("2025-06-18", "2026-07-28"):
        for result in results:
            assert isinstance(result, CallToolResult)
            whole = await encoder.encode(result, version)
            encoded.clear()
            once = await encoder.encode_once(result, version)
            assert once == whole, version
            # Spliced: the writer encoded only the stand-in, never the page.
            assert len(encoded) == 1, version
            assert encoded[0].structured_content != result.structured_content, version
