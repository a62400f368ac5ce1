"""The whole system on real sockets: pair, backend and gateway, as `taskgate dev` runs them."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskgate.devstack import Stack, running_stack
from tests.support.config import TEST_MCP_URL


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="taskgate-test-e2e-"))
    try:
        with running_stack(root, extra_env={"MCP_PUBLIC_URL": TEST_MCP_URL}) as running:
            yield running
    finally:
        shutil.rmtree(root, ignore_errors=True)
