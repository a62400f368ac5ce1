"""What a FastAPI app adds so the gateway shows each agent its own writes at once:

    from taskgate.fastapi import install_commit_lsn
    install_commit_lsn(app, engine)   # engine: the app's SQLAlchemy engine on the primary

Every write response (POST, PUT, PATCH, DELETE, below 400) then carries X-Commit-LSN, the
primary's flushed WAL position once the handler has returned (so after its commit: commit before
returning, not in a dependency's teardown), and GET /wal-position answers the position now. The
gateway makes the caller's next reads wait until a replica has replayed that position. A commit
made asynchronous only by SET LOCAL synchronous_commit = off is not covered until PostgreSQL
flushes it (within a few wal_writer_delay): set it per role or server, where the position query
sees it.

With `commit_lsn=False` only /wal-position is added: the gateway asks it after each write,
which is as safe and one round trip slower.

The engine is an AsyncEngine or a plain (sync) Engine, as most FastAPI apps have (psycopg,
SQLModel): a sync engine is asked from the threadpool that runs the app's sync routes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# shared.api's names and shared.wal_position's rule, spelled again: this module runs inside the
# user's app, whose own packages may be named `shared` (tests/unit/test_app_spec.py holds the
# spellings equal).
LSN_HEADER = "X-Commit-LSN"
WAL_POSITION_PATH = "/wal-position"
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The flush position (a replica can reach it; a synchronous commit is within it), or the insert
# position when commits are not synchronous.
_POSITION = text(
    "SELECT (CASE current_setting('synchronous_commit') WHEN 'off'"
    " THEN pg_current_wal_insert_lsn() ELSE pg_current_wal_flush_lsn() END)::text"
)


AnyEngine = AsyncEngine | Engine


def _sync_position(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.scalar(_POSITION))


async def _position(engine: AnyEngine) -> str:
    if isinstance(engine, Engine):
        return await run_in_threadpool(_sync_position, engine)
    async with engine.connect() as conn:
        return str(await conn.scalar(_POSITION))


class CommitLsnMiddleware:
    """Adds X-Commit-LSN to each successful write response."""

    def __init__(self, app: ASGIApp, engine: AnyEngine) -> None:
        self.app = app
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WRITES:
            await self.app(scope, receive, send)
            return

        async def send_with_position(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                position = await _position(self.engine)
                headers = [
                    *message.get("headers", []),
                    (LSN_HEADER.lower().encode(), position.encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_position)


def install_commit_lsn(app: Any, engine: AnyEngine, *, commit_lsn: bool = True) -> None:
    """`app`: a FastAPI (or Starlette) app; `engine`: its engine on the primary, async or sync."""
    if not isinstance(engine, AsyncEngine | Engine):
        # Refused here, at import: otherwise every write would fail after its commit.
        raise TypeError(
            "install_commit_lsn takes the app's SQLAlchemy engine (an AsyncEngine or an Engine), "
            f"not {type(engine).__name__}"
        )

    async def wal_position(_request: Request) -> JSONResponse:
        return JSONResponse({"lsn": await _position(engine)})

    app.add_route(WAL_POSITION_PATH, wal_position, methods=["GET"], include_in_schema=False)
    if commit_lsn:
        app.add_middleware(CommitLsnMiddleware, engine=engine)
