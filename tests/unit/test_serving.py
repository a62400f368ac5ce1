"""How `taskgate gateway` serves HTTP: start-up heap frozen, and a loop that accepts every
queued connection at once (the 64-connection tail, tests/bench/TAIL.md). No timing: the accept
test counts loop iterations, not milliseconds."""

from __future__ import annotations

import asyncio
import gc
import socket
from secrets import token_urlsafe
from typing import Any

import pytest
import uvicorn
from uvicorn.config import Config

from taskgate.cli import main
from taskgate.serving import SERVING_LOOP

CONNECTIONS = 32
TICKS = 8  # asyncio needs three (accept, transport, connection_made); libuv accepts one a tick


@pytest.mark.parametrize(
    "command", [["gateway", "--transport", "http", "--port", "1"], ["backend", "--port", "1"]]
)
def test_each_server_freezes_its_startup_heap_and_serves_on_the_accepting_loop(
    monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("JWT_SECRET", token_urlsafe(32))
    seen: dict[str, Any] = {}

    def fake_run(app: object, **options: Any) -> None:
        seen.update(options, frozen=gc.get_freeze_count(), app=app)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    gc.unfreeze()
    try:
        main(command)
        # Every object the app holds was built before uvicorn ran, so all are frozen.
        assert seen["frozen"] > 0
        assert gc.is_tracked(seen["app"]) and not any(seen["app"] is o for o in gc.get_objects())
    finally:
        gc.unfreeze()
    assert seen["loop"] == SERVING_LOOP


class _Counting(asyncio.Protocol):
    made: list[int]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(1)


async def _accepted_within(ticks: int) -> int:
    made: list[int] = []
    server = await asyncio.get_running_loop().create_server(
        lambda: type("P", (_Counting,), {"made": made})(), "127.0.0.1", 0, backlog=128
    )
    port = server.sockets[0].getsockname()[1]
    clients = []
    try:
        # Blocking connects: the kernel completes every handshake into the listen queue while
        # the loop is held here, as when many agents connect to a busy gateway at once.
        for _ in range(CONNECTIONS):
            clients.append(socket.create_connection(("127.0.0.1", port)))
        for _ in range(ticks):
            await asyncio.sleep(0)
        return len(made)
    finally:
        for client in clients:
            client.close()
        server.close()
        await server.wait_closed()


def test_the_gateway_loop_accepts_every_queued_connection_in_a_few_iterations() -> None:
    factory = Config(app="gateway.server:build_http_app", loop=SERVING_LOOP).get_loop_factory()
    assert factory is not None
    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(_accepted_within(TICKS)) == CONNECTIONS
