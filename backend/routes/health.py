from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from backend.errors import RETRY_AFTER_SECONDS, envelope_response
from backend.openapi import error_responses
from shared.api import LIVENESS_PATH, READINESS_PATH, WAL_POSITION_PATH
from shared.errors import ErrorCode
from shared.wal_position import COMMITTED_POSITION_SQL

router = APIRouter(tags=["health"])


class Alive(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ok"] = "ok"
    primary: Literal["up"] = "up"


class WalPosition(BaseModel):
    lsn: str


@router.get(LIVENESS_PATH, response_model=Alive, responses=error_responses(500))
async def healthz() -> Alive:
    """The process is alive."""
    return Alive()


async def _on_primary(request: Request, sql: str, what: str) -> Any | JSONResponse:
    """`sql`'s scalar on the primary, or the 503 envelope when the primary cannot answer."""
    settings = request.app.state.settings
    try:
        async with asyncio.timeout(settings.db_connect_timeout + settings.db_pool_timeout):
            async with request.app.state.engine.connect() as conn:
                return await conn.scalar(text(sql))
    except Exception as exc:  # only its class goes to the log
        request.app.state.log.warning("%s failed: %s", what, type(exc).__name__)
        return envelope_response(
            503,
            ErrorCode.BACKEND_UNAVAILABLE,
            "the primary database cannot be reached",
            {"primary": "down"},
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )


@router.get(READINESS_PATH, response_model=Ready, responses=error_responses(500, 503))
async def readyz(request: Request) -> Ready | JSONResponse:
    """The primary can be reached."""
    answer = await _on_primary(request, "SELECT 1", "readiness check")
    return answer if isinstance(answer, JSONResponse) else Ready()


@router.get(WAL_POSITION_PATH, response_model=WalPosition, responses=error_responses(500, 503))
async def wal_position(request: Request) -> WalPosition | JSONResponse:
    """The primary's position now, as a write's commit position (shared.wal_position): asked
    after a write whose reply carried none, and by a gateway whose shared write marks were lost
    (Redis restarted, or evicted them), which makes every read wait for it."""
    answer = await _on_primary(request, COMMITTED_POSITION_SQL, "WAL position")
    return answer if isinstance(answer, JSONResponse) else WalPosition(lsn=str(answer))
