"""The cache TTL at run time: changes to the TtlPolicy every read consults, and their store.

With CACHE_URL=redis://..., the policy lives in Redis too, so a change made through one gateway
reaches every gateway on that Redis within one poll interval (CACHE_TTL_SYNC_SECONDS) plus one
Redis round trip. The key sits outside the cache's namespace: a flush keeps it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any

from aiocache.base import BaseCache

from readmodel.cache import TtlPolicy
from readmodel.redis_keys import POLICY_NAMESPACE

log = logging.getLogger(__name__)

POLICY_KEY = "ttl-policy"
# What aiocache's Redis backend makes of them ("<namespace>:<key>"): the key operators can inspect.
POLICY_REDIS_KEY = f"{POLICY_NAMESPACE}:{POLICY_KEY}"


def replace_policy(policy: TtlPolicy, snapshot: dict[str, Any]) -> None:
    """Adopt a snapshot made by TtlPolicy.as_dict (here or in another gateway)."""
    policy.default = float(snapshot["cache_ttl"])
    policy.overrides = {str(k): float(v) for k, v in dict(snapshot["overrides"]).items()}


@dataclass(frozen=True)
class TtlChange:
    """One operator change. tool None is the global TTL; new None removes a tool's override."""

    tool: str | None
    old: float | None
    new: float | None


def changed(policy: TtlPolicy, tool: str | None, ttl: float | None) -> dict[str, Any]:
    """The snapshot that policy would have after the change, without applying it."""
    snapshot = policy.as_dict()
    if tool is None:
        if ttl is None:
            raise ValueError("the global TTL cannot be removed, only set")
        snapshot["cache_ttl"] = ttl
    elif ttl is None:
        snapshot["overrides"].pop(tool, None)
    else:
        snapshot["overrides"][tool] = ttl
    return snapshot


def _valid_snapshot(value: Any) -> dict[str, Any] | None:
    """A stored snapshot, or None when what Redis holds is not one (never trusted blindly)."""
    if not isinstance(value, dict):
        return None
    try:
        default = float(value["cache_ttl"])
        overrides = {str(k): float(v) for k, v in dict(value["overrides"]).items()}
    except (KeyError, TypeError, ValueError):
        return None
    if not all(math.isfinite(t) and t >= 0 for t in (default, *overrides.values())):
        return None
    return {"cache_ttl": default, "overrides": overrides}


class TtlStore:
    """Keeps one TtlPolicy in step with the copy in the shared cache (Redis)."""

    def __init__(self, cache: BaseCache, policy: TtlPolicy, interval: float) -> None:
        self.cache = cache
        self.policy = policy
        self.interval = interval

    async def load(self) -> dict[str, Any] | None:
        try:
            value = await self.cache.get(POLICY_KEY, namespace=POLICY_NAMESPACE)
        except ValueError:  # not JSON: treated as absent, so the next change overwrites it
            return None
        return _valid_snapshot(value)

    async def publish(self, snapshot: dict[str, Any]) -> None:
        # No expiry: the policy holds until an operator changes it again.
        await self.cache.set(POLICY_KEY, snapshot, namespace=POLICY_NAMESPACE)

    async def refresh(self) -> bool:
        """Adopt the shared policy if it differs from ours. Returns whether it did."""
        snapshot = await self.load()
        if snapshot is None or snapshot == self.policy.as_dict():
            return False
        old = self.policy.as_dict()
        replace_policy(self.policy, snapshot)
        log.info(
            "cache TTL policy picked up from the shared store: %s -> %s",
            old,
            snapshot,
            extra={"old": old, "new": snapshot},
        )
        return True

    async def run(self) -> None:
        """Poll until cancelled. A Redis fault keeps the last known policy."""
        failing = False
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except Exception as exc:  # Redis down: keep serving with the policy we have
                if not failing:
                    log.warning("cannot read the shared TTL policy (%s)", type(exc).__name__)
                failing = True
            else:
                failing = False
