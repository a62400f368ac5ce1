"""Liveness and readiness: is the process up, and can it reach what its tools depend on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from mcp.server.mcpserver import MCPServer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.runtime import Runtime, RuntimeRef

log = logging.getLogger(__name__)

# A probe answers within the orchestrator's timeout (1 s by default in Kubernetes).
CHECK_TIMEOUT_SECONDS = 0.8


async def _one_replica(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _replica(rt: Runtime) -> None:
    """Up when any replica answers: reads need one."""
    engines = [replica.engine for replica in rt.reader.replicas.replicas]
    probes = [asyncio.ensure_future(_one_replica(engine)) for engine in engines]
    try:
        for probe in asyncio.as_completed(probes):
            try:
                await probe
            except Exception as exc:
                failure: Exception = exc
            else:
                return
        raise failure
    finally:
        for probe in probes:
            probe.cancel()


async def _backend(rt: Runtime) -> None:
    # The backend's liveness, not its readiness: reads still work while the primary is down.
    response = await rt.backend.http.get("/healthz")
    response.raise_for_status()


async def _cache(rt: Runtime) -> None:
    await rt.reader.cache.cache.exists("readyz-probe")


async def _check(name: str, probe: Awaitable[None]) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await probe
    except Exception as exc:  # any failure means not ready; the reason goes to the log only
        log.warning("readiness: %s is down (%s)", name, type(exc).__name__)
        return "down"
    return "up"


async def readiness(rt: Runtime) -> dict[str, str]:
    names = ("replica", "backend", "cache")
    results = await asyncio.gather(
        _check("replica", _replica(rt)),
        _check("backend", _backend(rt)),
        _check("cache", _cache(rt)),
    )
    return dict(zip(names, results, strict=True))


def add_health_routes(server: MCPServer, ref: RuntimeRef) -> None:
    @server.custom_route("/healthz", methods=["GET"])  # type: ignore[untyped-decorator]
    async def healthz(_: Request) -> Response:
        """The process is alive."""
        return JSONResponse({"status": "ok"})

    @server.custom_route("/readyz", methods=["GET"])  # type: ignore[untyped-decorator]
    async def readyz(_: Request) -> Response:
        """The replica, the backend and the cache can be reached."""
        try:
            rt = ref.get()
        except RuntimeError:
            return JSONResponse({"status": "starting"}, status_code=503)
        checks = await readiness(rt)
        ready = all(state == "up" for state in checks.values())
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": checks},
            status_code=200 if ready else 503,
        )
