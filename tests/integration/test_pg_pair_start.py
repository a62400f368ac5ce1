"""Starting the local cluster on a busy machine: ports taken meanwhile, several replicas."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from taskgate.pgpair import PgPair, PgPairError
from tests.support.faults import replay_paused, start_replica, stop_replica


def test_a_port_taken_between_choice_and_bind_is_replaced_and_two_replicas_stream() -> None:
    root = Path(tempfile.mkdtemp(prefix="taskgate-test-ports-"))
    pair = PgPair(root, replicas=2)
    taken = pair.replica_ports[1]
    # Another server grabs the second replica's port after it was chosen, before it binds.
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        try:
            with pair:
                assert pair.replica_ports[1] != taken
                streaming = pair.psql(
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
                )
                assert streaming == "2"
                for index in range(2):
                    assert pair.psql("SELECT pg_is_in_recovery()", replica=index) == "t"
                assert len(set(pair.read_database_urls)) == 2
                with replay_paused(pair, replica=1):
                    state = "SELECT pg_get_wal_replay_pause_state()"
                    assert pair.psql(state, replica=1) == "paused"
                    assert pair.psql(state, replica=0) == "not paused"
        finally:
            shutil.rmtree(root, ignore_errors=True)


def test_a_failed_start_names_the_step_and_shows_the_server_log() -> None:
    root = Path(tempfile.mkdtemp(prefix="taskgate-test-badstart-"))
    pair = PgPair(root)
    try:
        pair.start()
        stop_replica(pair)
        # A setting the server refuses: the start fails for a reason other than the port.
        with (pair.replica_dir / "postgresql.auto.conf").open("a") as conf:
            conf.write("\nshared_buffers = 'not a size'\n")
        with pytest.raises(PgPairError) as failed:
            start_replica(pair)
        message = str(failed.value)
        assert message.startswith("starting the replica: pg_ctl failed")
        assert "last lines of" in message and "shared_buffers" in message
    finally:
        pair.stop()
        shutil.rmtree(root, ignore_errors=True)
