"""A TCP proxy that hands each new connection to the next upstream in turn.

It stands in for a pooler or a load balancer (a Kubernetes `-ro` service) in front of several
replicas behind one READ_DATABASE_URL. It runs its own event loop in a thread, so gateway
processes and the test's loop can both use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import Counter

from tests.support.ports import free_port


class AlternatingProxy:
    def __init__(self, upstream_ports: list[int]) -> None:
        self.upstream_ports = upstream_ports
        self.port = free_port()
        self.connections: Counter[int] = Counter()  # per upstream port
        self.chunks: Counter[int] = Counter()  # client-to-server reads, about one per query
        self._turn = itertools.cycle(upstream_ports)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url_host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        self._server = future.result(10)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        upstream = next(self._turn)
        self.connections[upstream] += 1
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(
            self._pipe(client_r, server_w, upstream), self._pipe(server_r, client_w, None)
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count_for: int | None
    ) -> None:
        try:
            while data := await reader.read(65536):
                if count_for is not None:
                    self.chunks[count_for] += 1
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
