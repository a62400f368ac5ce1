"""Read tool replies encoded once per cache entry, for gateway.fast_path.

A reply is built by the SDK's own code, never by hand: the tool's `convert_result`, the
runner's wire shaping (`ServerRunner._serialize`: cache hints, the per-version sieve, the
2026 `serverInfo` stamp), and the transport's writer for the request's era (the handshake-era
transport's JSON response, or the 2026-07-28 entry's `_write`). It is encoded with a sentinel
id and cut around it, so a call splices its own id in. When the SDK changes how a reply looks
(a compact text block, a new field), these bytes change with it.

The encoded replies sit in an LRU bounded in bytes, keyed by cache key and protocol version,
and each remembers the cached bytes it was built from: a cache entry reloaded under the same
key (the TTL ran out) is encoded again, never answered from the old one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic_core
from cachetools import LRUCache
from mcp.server._streamable_http_modern import _write as write_modern_reply
from mcp.server.connection import Connection
from mcp.server.lowlevel.server import Server
from mcp.server.runner import ServerRunner
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.types import CallToolResult
from mcp_types import JSONRPCResponse, RequestId
from mcp_types.version import LATEST_MODERN_VERSION, MODERN_PROTOCOL_VERSIONS
from starlette.types import Message

from readmodel.cache import decode_entry
from readmodel.reader import CachedRead

_SENTINEL_ID = "taskgate-fast-path-request-id"
# What a memo entry costs beyond its key's, cached and encoded bytes: the bytes and str objects'
# headers, the key tuple, the entry and reply objects, the LRU's slots and size record.
# tracemalloc shows ~560 on CPython 3.11 (tests/unit/gateway/test_encoded_results.py), so the
# byte bound holds only if each entry is charged at least that.
MEMO_ENTRY_OVERHEAD_BYTES = 640
# Distinct header lists kept for replies to share: one per era and status, in practice.
_SHARED_HEADER_SETS = 16


@dataclass(frozen=True, slots=True)
class Reply:
    """One encoded reply, cut at its id: head + id + tail is the body."""

    status: int
    # Without content-length, which depends on the id. One tuple shared by the replies that
    # have the same headers, so a reply's headers cost nothing the memo's charge misses.
    headers: tuple[tuple[bytes, bytes], ...]
    head: bytes
    tail: bytes


@dataclass(frozen=True, slots=True)
class _Memo:
    stored: bytes
    reply: Reply
    charge: int


def _charge(key: str, stored: bytes, reply: Reply) -> int:
    """What a memo entry holds: its key (the memo's own copy), the cached bytes it was built
    from (its own copy too, when the cache is Redis), the reply's bytes, and the overhead."""
    size = len(key) + len(stored) + len(reply.head) + len(reply.tail)
    return size + MEMO_ENTRY_OVERHEAD_BYTES


def encode_id(version: str, request_id: RequestId) -> bytes:
    """The id as each era's writer spells it: pydantic's JSON for the handshake-era transport,
    the standard library's (ASCII) for the 2026-07-28 entry."""
    if version in MODERN_PROTOCOL_VERSIONS:
        return json.dumps(request_id).encode()
    return pydantic_core.to_json(request_id)


def body_of(reply: Reply, version: str, request_id: RequestId) -> bytes:
    return reply.head + encode_id(version, request_id) + reply.tail


class ReplyEncoder:
    """Encodes CallToolResults as the SDK would send them, with a byte-bounded memo of hits."""

    def __init__(self, server: Server[Any], max_bytes: int) -> None:
        self.max_bytes = max_bytes
        # The runner is only asked to shape results (_serialize reads server settings alone).
        self._runner = ServerRunner(
            server, Connection.from_envelope(LATEST_MODERN_VERSION, None, None), None
        )
        self._legacy = StreamableHTTPServerTransport(
            mcp_session_id=None, is_json_response_enabled=True
        )
        self._memo: LRUCache[tuple[str, str], _Memo] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda memo: memo.charge
        )
        self._header_sets: dict[tuple[tuple[bytes, bytes], ...], tuple[tuple[bytes, bytes], ...]]
        self._header_sets = {}

    @property
    def used_bytes(self) -> int:
        return int(self._memo.currsize)

    def __len__(self) -> int:
        return len(self._memo)

    async def cached(
        self, hit: CachedRead, version: str, convert: Callable[[Any], object]
    ) -> Reply:
        """The reply for a cache hit, from the memo when it was encoded from these bytes."""
        memo_key = (hit.key, version)
        memo = self._memo.get(memo_key)
        if memo is not None and (memo.stored is hit.stored or memo.stored == hit.stored):
            return memo.reply
        result = convert(decode_entry(hit.stored))
        if not isinstance(result, CallToolResult):  # a multi-round result: not for this path
            raise TypeError(f"a read tool converted to {type(result).__name__}")
        reply = await self.encode(result, version)
        memo = _Memo(hit.stored, reply, _charge(hit.key, hit.stored, reply))
        if memo.charge <= self.max_bytes:
            self._memo[memo_key] = memo
        return reply

    async def encode(self, result: CallToolResult, version: str) -> Reply:
        """Encode a tools/call result for `version`'s wire: the SDK's shaping and writer."""
        shaped = dict(self._runner._serialize("tools/call", version, result))
        message = JSONRPCResponse(jsonrpc="2.0", id=_SENTINEL_ID, result=shaped)
        status, headers, body = await self._write(message, version)
        # The envelope's fields come in order (jsonrpc, id, result): the first sentinel is the id.
        sentinel = encode_id(version, _SENTINEL_ID)
        at = body.find(sentinel)
        if at < 0 or not body[:at].endswith(b'"id":'):
            raise ValueError("the SDK's reply does not carry the id where expected")
        kept = tuple((name, value) for name, value in headers if name != b"content-length")
        shared = self._header_sets.get(kept)
        if shared is None and len(self._header_sets) < _SHARED_HEADER_SETS:
            shared = self._header_sets[kept] = kept
        return Reply(status, shared or kept, body[:at], body[at + len(sentinel) :])

    async def _write(
        self, message: JSONRPCResponse, version: str
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        sent: list[Message] = []

        async def capture(event: Message) -> None:
            sent.append(event)

        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        scope: Mapping[str, Any] = {"type": "http"}
        if version in MODERN_PROTOCOL_VERSIONS:
            await write_modern_reply(message, dict(scope), no_body, capture)
        else:
            response = self._legacy._create_json_response(message)
            await response(dict(scope), no_body, capture)
        start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
        return int(start["status"]), list(start["headers"]), body
