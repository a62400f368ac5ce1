"""The SDK fence's self-test: it passes on the pinned SDK, and names what broke otherwise."""

from __future__ import annotations

import pytest
from mcp.server.runner import ServerRunner

from gateway.sdk_fence import self_test


async def test_the_pinned_sdk_passes() -> None:
    assert await self_test() is None


async def test_a_private_name_gone_from_the_sdk_is_a_failed_self_test_not_an_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(ServerRunner, "_serialize")
    problem = await self_test()
    assert problem is not None and "_serialize" in problem
