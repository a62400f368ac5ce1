"""Faults injected into a running PgPair: a lagging replica, a stopped replica, a restarted primary.

Only tests need these, so they live here rather than in the shipped `taskgate.pgpair`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from taskgate.pgpair import PgPair


@contextmanager
def replay_paused(pair: PgPair, replica: int = 0) -> Iterator[None]:
    """The replica keeps receiving WAL but stops replaying it: a lagging replica, on demand."""
    pair.psql("SELECT pg_wal_replay_pause()", replica=replica)
    try:
        yield
    finally:
        resume_replay(pair, replica)


def resume_replay(pair: PgPair, replica: int = 0) -> None:
    pair.psql("SELECT pg_wal_replay_resume()", replica=replica)


def stop_replica(pair: PgPair, index: int = 0) -> None:
    pair.stop_server(pair.replica_dir_of(index), pair.replica_name(index))


def start_replica(pair: PgPair, index: int = 0) -> None:
    # The pair's own start step, run again on a stopped replica's data folder.
    pair._start_replica(index)


def restart_primary(pair: PgPair) -> None:
    pair.stop_server(pair.primary_dir, "primary")
    pair._start_primary()
