"""An in-process gateway that a synchronous Hypothesis test can call: its MCP client lives on a
loop in another thread, and its logs are collected for leak checks."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from mcp import Client
from mcp.types import CallToolResult

from gateway.server import build_server
from shared.settings import Settings

T = TypeVar("T")


class Collected(logging.Handler):
    """Every log record of the process while a fixture holds it, for leak checks."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(
            self.format(r) + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
            for r in self.records
        )


class ThreadedClient:
    """An in-process gateway (GATEWAY_TOKEN = the agent's token) and its MCP client, served on an
    event loop in a thread of its own, so Hypothesis's synchronous tests can call tools."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._client: Client | None = None
        self._stop: asyncio.Event | None = None
        self._served: Future[None] | None = None
        self.log = Collected()
        self._root_level = logging.NOTSET

    def start(self) -> None:
        # Everything from DEBUG up reaches the handler, or the leak checks would pass on nothing.
        root = logging.getLogger()
        self._root_level = root.level
        root.setLevel(logging.DEBUG)
        root.addHandler(self.log)
        self._thread.start()
        ready: Future[None] = Future()
        self._served = asyncio.run_coroutine_threadsafe(self._serve(ready), self._loop)
        ready.result(timeout=60)

    async def _serve(self, ready: Future[None]) -> None:
        # The client is entered and left in this one task, as its anyio task group requires.
        self._stop = asyncio.Event()
        server, _ = build_server(self._settings)
        try:
            async with Client(server) as client:
                self._client = client
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    def call(self, tool: str, arguments: Any) -> CallToolResult:
        return self.run(lambda client: client.call_tool(tool, arguments))

    def run(self, request: Callable[[Client], Coroutine[Any, Any, T]]) -> T:
        """Any request of the MCP client, on the client's loop."""
        assert self._client is not None
        return asyncio.run_coroutine_threadsafe(request(self._client), self._loop).result(60)

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._served is not None:
            self._served.result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
        logging.getLogger().removeHandler(self.log)
        logging.getLogger().setLevel(self._root_level)
