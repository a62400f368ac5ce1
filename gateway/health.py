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
from shared.api import LIVENESS_PATH, READINESS_PATH

log = logging.getLogger(__name__)

# A probe answers within the orchestrator's timeout (1 s by default in Kubernetes).
CHECK_TIMEOUT_SECONDS = 0.8


async def _one_replica(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def replica_states(rt: Runtime) -> dict[str, str]:
    """Each replica, by its label (host:port, never a URL): "up" or "down"."""
    replicas = rt.reader.replicas.replicas
    states = await asyncio.gather(
        *(_check(f"replica {r.label}", _one_replica(r.engine)) for r in replicas)
    )
    return {r.label: state for r, state in zip(replicas, states, strict=True)}


async def _backend(rt: Runtime) -> None:
    # The backend's liveness, not its readiness: reads still work while the primary is down.
    await rt.backend.check_alive()


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


async def readiness(rt: Runtime) -> tuple[dict[str, str], dict[str, str]]:
    """The checks (the replica check is up when any replica is: reads need one), and each
    replica's own state."""
    replicas, backend, cache = await asyncio.gather(
        replica_states(rt), _check("backend", _backend(rt)), _check("cache", _cache(rt))
    )
    replica = "up" if "up" in replicas.values() else "down"
    return {"replica": replica, "backend": backend, "cache": cache}, replicas


def add_health_routes(server: MCPServer, ref: RuntimeRef) -> None:
    @server.custom_route(LIVENESS_PATH, methods=["GET"])  # type: ignore[untyped-decorator]
    async def healthz(_: Request) -> Response:
        """The process is alive."""
        return JSONResponse({"status": "ok"})

    @server.custom_route(READINESS_PATH, methods=["GET"])  # type: ignore[untyped-decorator]
    async def readyz(_: Request) -> Response:
        """The replica, the backend and the cache can be reached."""
        try:
            rt = ref.get()
        except RuntimeError:
            return JSONResponse({"status": "starting"}, status_code=503)
        checks, replicas = await readiness(rt)
        ready = all(state == "up" for state in checks.values())
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": checks, "replicas": replicas},
            status_code=200 if ready else 503,
        )
