"""Read tool replies encoded once per cache entry, for gateway.fast_path.

A reply is built by the SDK's own code, never by hand: the tool's `convert_result`, then
gateway.sdk_fence.ReplyWriter (the runner's wire shaping and the writer of the request's era),
encoded with a sentinel id and cut around it, so a call splices its own id in. When the SDK
changes how a reply looks (a compact text block, a new field), these bytes change with it, and
the fence's start-up self-test checks that they still equal the SDK's own.

The encoded replies sit in an LRU bounded in bytes, keyed by cache key and protocol version,
and each remembers the cached bytes it was built from: a cache entry reloaded under the same
key (the TTL ran out) is encoded again, never answered from the old one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult

from gateway.sdk_fence import Reply, ReplyWriter, lowlevel_server
from readmodel.cache import decode_entry
from readmodel.reader import CachedRead

# What a memo entry costs beyond its key's, cached and encoded bytes: the bytes and str objects'
# headers, the key tuple, the entry and reply objects, the LRU's slots and size record.
# tracemalloc shows ~560 on CPython 3.11 (tests/unit/gateway/test_encoded_results.py), so the
# byte bound holds only if each entry is charged at least that.
MEMO_ENTRY_OVERHEAD_BYTES = 640


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


class ReplyEncoder:
    """Encodes CallToolResults as the SDK would send them, with a byte-bounded memo of hits."""

    def __init__(self, writer: ReplyWriter, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._writer = writer
        self._memo: LRUCache[tuple[str, str], _Memo] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda memo: memo.charge
        )

    @classmethod
    def of(cls, server: MCPServer, max_bytes: int) -> ReplyEncoder:
        return cls(ReplyWriter(lowlevel_server(server)), max_bytes)

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
        """Encode a tools/call result for `version`'s wire (not remembered)."""
        return await self._writer.encode(result, version)

    async def encode_once(self, result: CallToolResult, version: str) -> Reply:
        """Encode a result sent once (a miss), its values encoded once (not remembered)."""
        return await self._writer.encode_once(result, version)
