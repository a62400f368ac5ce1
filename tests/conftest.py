"""Fixtures shared by every test level: a real PostgreSQL primary and streaming replica."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.migrate import upgrade_to_head
from shared.settings import Settings
from taskgate.pgpair import PgPair

TEST_JWT_SECRET = "test-secret-" + "x" * 32


@pytest.fixture(scope="session")
def pg_pair() -> Iterator[PgPair]:
    """One migrated primary + replica for the whole run, on free loopback ports."""
    root = Path(tempfile.mkdtemp(prefix="taskgate-test-pg-"))
    pair = PgPair(root)
    try:
        pair.start()
        upgrade_to_head(pair.database_url)
        yield pair
    finally:
        pair.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(pg_pair: PgPair) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=pg_pair.database_url,
        read_database_url=pg_pair.read_database_url,
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        cache_url="memory://",
    )
