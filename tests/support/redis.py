"""A private redis-server for tests about Redis: the product's own, in a temporary folder."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from taskgate.redis_server import RedisServer
from tests.support.ports import free_port

__all__ = ["RedisServer", "running_redis"]


@contextmanager
def running_redis() -> Iterator[RedisServer]:
    root = Path(tempfile.mkdtemp(prefix="taskgate-test-redis-"))
    server = RedisServer(root, port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
