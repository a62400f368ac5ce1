"""A private redis-server on a free loopback port, for `taskgate dev --gateways M` (M > 1).

It uses the redis-server found on PATH (or Debian's /usr/bin, /usr/sbin), keeps nothing on
disk, and is stopped with the rest of dev.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from taskgate.pgpair import free_port

START_TIMEOUT_SECONDS = 10.0
# Redis holds the shared cache and the rate-limit buckets, all with TTLs: at the cap the least
# recently used of those is evicted, so a flood of distinct keys cannot grow it without bound.
# The same cap and policy as compose.yaml's Redis.
MAX_MEMORY = "256mb"
MAX_MEMORY_POLICY = "volatile-lru"


class RedisServerError(RuntimeError):
    """redis-server is missing or did not start."""


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/usr/bin")
    if not found:
        raise RedisServerError(
            "several gateways share one Redis, and no redis-server was found on PATH "
            "(Debian: apt-get install redis-server)"
        )
    return found


@dataclass
class RedisServer:
    root: Path
    port: int = 0
    logfile: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.port = self.port or free_port()
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.root),
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory",
            MAX_MEMORY,
            "--maxmemory-policy",
            MAX_MEMORY_POLICY,
        ]
        if self.logfile is not None:
            args += ["--logfile", str(self.logfile)]
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2)
            try:
                client.ping()
                return
            except redis.ConnectionError:
                exited = self.process is not None and self.process.poll() is not None
                if exited or time.monotonic() > deadline:
                    self.stop()
                    raise RedisServerError(
                        f"redis-server did not start on 127.0.0.1:{self.port}"
                    ) from None
                time.sleep(0.02)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
