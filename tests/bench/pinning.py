"""Servers and PostgreSQL on one core, the load generator on the other (`taskset`).

On a 2-core machine a ratio between two servers means what each does with the same CPU only when
the client does not take its time from them; every benchmark that pins uses these.
"""

from __future__ import annotations

import os
import subprocess

import psutil  # type: ignore[import-untyped]

from taskgate.devstack import Stack

SERVER_CPU = 0
CLIENT_CPU = 1


def pin(pid: int, cpu: int) -> None:
    """Every thread of the process (and of its children) on one CPU, as `taskset -a -p -c`."""
    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    for proc in procs:
        subprocess.run(
            ["taskset", "-a", "-p", "-c", str(cpu), str(proc.pid)],
            check=True,
            stdout=subprocess.DEVNULL,
        )


def postmaster_pids(stack: Stack) -> list[int]:
    pair = stack.pair
    dirs = [pair.primary_dir] + [pair.replica_dir_of(i) for i in range(pair.replicas)]
    return [int((d / "postmaster.pid").read_text().split()[0]) for d in dirs]


def pin_servers_and_client(server_pids: list[int], stack: Stack) -> None:
    """The servers and every PostgreSQL process on SERVER_CPU, this process on CLIENT_CPU."""
    for pid in [*server_pids, *postmaster_pids(stack)]:
        pin(pid, SERVER_CPU)
    os.sched_setaffinity(0, {CLIENT_CPU})


def described() -> str:
    return f"servers and PostgreSQL on CPU {SERVER_CPU}, load generators on CPU {CLIENT_CPU}"
