"""The operators' HTTP API: read the cache settings and statistics, change the TTL, flush.

Guarded by ADMIN_TOKEN (a bearer token, compared in constant time); with ADMIN_TOKEN unset the
routes answer not_found. With a shared cache (Redis) a change is published first, then applied
here; other gateways pick it up within CACHE_TTL_SYNC_SECONDS. Every change is logged with who
made it (X-Admin-Actor, and the client address) and the old and new values.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.runtime import Runtime, RuntimeRef
from readmodel.ttl import TtlChange, changed, replace_policy
from shared.api import ADMIN_ACTOR_HEADER, ADMIN_CACHE_PATH, ADMIN_FLUSH_PATH, ADMIN_TTL_PATH
from shared.asgi_body import content_length, read_body
from shared.errors import ErrorCode, TaskgateError, validation_error
from shared.settings import Settings
from shared.tokens import require_static_bearer

log = logging.getLogger("gateway.admin")

_ACTOR = re.compile(r"^[\w.@:-]{1,64}$")
_MAX_BODY_BYTES = 4096
MAX_TTL_SECONDS = 7 * 86_400


class TtlUpdate(BaseModel):
    """PUT /admin/cache/ttl. No tool: the global TTL. ttl null with a tool: drop its override."""

    model_config = ConfigDict(extra="forbid")

    ttl: float | None = Field(ge=0, le=MAX_TTL_SECONDS, allow_inf_nan=False)
    tool: str | None = Field(None, min_length=1, max_length=100)  # a read tool of the app
    flush: bool = False


def _error(error: TaskgateError) -> JSONResponse:
    return JSONResponse(
        error.envelope().model_dump(mode="json"),
        status_code=error.http_status,
        headers=error.http_headers,
    )


def _actor(request: Request) -> str:
    claimed = request.headers.get(ADMIN_ACTOR_HEADER, "")
    name = claimed if _ACTOR.match(claimed) else "unnamed"
    host = request.client.host if request.client else "unknown"
    return f"{name}@{host}"


class AdminApi:
    def __init__(self, settings: Settings, ref: RuntimeRef) -> None:
        token = settings.admin_token.get_secret_value() if settings.admin_token else ""
        self._token = token.encode()
        self._ref = ref
        self._sync_seconds = settings.cache_ttl_sync_seconds

    def _authorize(self, request: Request) -> None:
        if not self._token:
            raise TaskgateError(
                ErrorCode.NOT_FOUND, "the admin API is disabled: ADMIN_TOKEN is not set"
            )
        require_static_bearer(request.headers.get("Authorization", ""), self._token, "admin")

    def show(self, rt: Runtime) -> dict[str, Any]:
        cache = rt.reader.cache
        stats = cache.stats.as_dict()
        lookups = stats.get("hits", 0) + stats.get("misses", 0)
        hit_ratio = round(stats.get("hits", 0) / lookups, 4) if lookups else None
        return {
            "ttl": cache.ttl.as_dict(),
            "effective_ttl": {tool: cache.ttl.ttl_for(tool) for tool in rt.reader.tools},
            "shared": rt.ttl_store is not None,
            "sync_seconds": self._sync_seconds if rt.ttl_store is not None else None,
            "stats": {**stats, "hit_ratio": hit_ratio},
            "reads": dataclasses.asdict(rt.reader.stats),
        }

    async def set_ttl(self, rt: Runtime, update: TtlUpdate, actor: str) -> TtlChange:
        if update.tool is not None and update.tool not in rt.reader.tools:
            known = ", ".join(rt.reader.tools)
            raise validation_error(
                [{"loc": ("tool",), "type": "unknown_read_tool", "msg": f"one of {known}"}],
                f"tool must be one of the read tools: {known}",
            )
        policy, store = rt.reader.cache.ttl, rt.ttl_store
        if store is not None:
            await store.refresh()  # start from what the other gateways hold
        old = policy.overrides.get(update.tool) if update.tool else policy.default
        snapshot = changed(policy, update.tool, update.ttl)
        if store is not None:
            await store.publish(snapshot)  # first, so a failure changes nothing
        replace_policy(policy, snapshot)
        change = TtlChange(update.tool, old, update.ttl)
        log.info(
            "cache TTL changed by %s: %s %s -> %s",
            actor,
            update.tool or "global",
            old,
            update.ttl,
            extra={"actor": actor, "tool": update.tool or "global", "old": old, "new": update.ttl},
        )
        if update.flush:
            await self.flush(rt, actor)
        return change

    async def flush(self, rt: Runtime, actor: str) -> None:
        await rt.reader.cache.flush()
        log.info("cache flushed by %s", actor, extra={"actor": actor})

    async def handle(self, request: Request) -> Response:
        try:
            self._authorize(request)
            rt = self._ref.get()
            route = (request.url.path, request.method)
            if route not in _ROUTES:
                raise TaskgateError(
                    ErrorCode.BAD_REQUEST,
                    f"{request.method} is not allowed here",
                    {"allowed": sorted(m for p, m in _ROUTES if p == request.url.path)},
                )
            if request.url.path == ADMIN_TTL_PATH:
                update = TtlUpdate.model_validate_json(await _body(request))
                if update.tool is None and update.ttl is None:
                    raise TaskgateError(
                        ErrorCode.VALIDATION_ERROR,
                        "the global TTL cannot be removed; give a number of seconds",
                        {"errors": [{"field": "ttl", "type": "missing", "message": "required"}]},
                    )
                change = await self.set_ttl(rt, update, _actor(request))
                body = {**dataclasses.asdict(change), **self.show(rt)}
            elif request.url.path == ADMIN_FLUSH_PATH:
                await self.flush(rt, _actor(request))
                body = {"flushed": True}
            else:
                body = self.show(rt)
        except ValidationError as exc:
            return _error(
                validation_error(exc.errors(include_input=False), "the request is not valid")
            )
        except TaskgateError as exc:
            return _error(exc)
        except RuntimeError:  # the lifespan has not started, or has ended
            return _error(TaskgateError(ErrorCode.SERVER_ERROR, "the gateway is not running"))
        except Exception as exc:  # the shared cache failed; a TTL change is published first
            log.warning("admin request failed: %s", type(exc).__name__)
            return _error(
                TaskgateError(
                    ErrorCode.SERVER_ERROR,
                    "the shared cache could not be reached; retry shortly",
                    {"reason": type(exc).__name__},
                )
            )
        return JSONResponse(body)


async def _body(request: Request) -> bytes:
    declared = content_length(request.headers.get("content-length"))
    read = None
    if declared is None or declared <= _MAX_BODY_BYTES:
        read = await read_body(request.receive, _MAX_BODY_BYTES)
    if read is None or read.too_large:
        raise TaskgateError(ErrorCode.BAD_REQUEST, "request body is too large")
    return read.body or b""


_ROUTES = {
    (ADMIN_CACHE_PATH, "GET"),
    (ADMIN_TTL_PATH, "PUT"),
    (ADMIN_FLUSH_PATH, "POST"),
}
# Every method reaches the handler, so a wrong one also gets the envelope, not a bare 405.
_METHODS = ["GET", "PUT", "POST", "PATCH", "DELETE"]


def add_admin_routes(server: MCPServer, api: AdminApi) -> None:
    for path in sorted({path for path, _ in _ROUTES}):
        server.custom_route(path, methods=_METHODS)(api.handle)
