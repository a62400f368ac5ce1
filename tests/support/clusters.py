"""A migrated primary with streaming replicas in a temporary folder, for a test session."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.migrate import upgrade_to_head
from taskgate.pgpair import PgPair


@contextmanager
def migrated_cluster(prefix: str, replicas: int = 1) -> Iterator[PgPair]:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    pair = PgPair(root, replicas=replicas)
    try:
        pair.start()
        upgrade_to_head(pair.database_url)
        yield pair
    finally:
        pair.stop()
        shutil.rmtree(root, ignore_errors=True)
