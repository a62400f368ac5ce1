from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """The primary can be reached."""
    try:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means not ready; the reason goes to the log only
        request.app.state.log.warning("readiness check failed: %s", type(exc).__name__)
        return JSONResponse({"status": "unavailable", "primary": "down"}, status_code=503)
    return JSONResponse({"status": "ok", "primary": "up"})
