"""The gateway's composition root: settings in, the MCP server with its tools, routes and one
lifespan out, and the HTTP app around it.

A tool call enters at gateway.mcp_server.TaskgateMCP.call_tool, or at gateway.fast_path for a
cached read, and both pass gateway.call_gate (request id, caller, limits, failure envelope,
metrics); its caller is resolved by gateway.identity.resolve_principal; it reaches the
backend through gateway.backend_client.BackendClient or the read model through readmodel.reader.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.caching import CacheHint
from mcp.server.transport_security import TransportSecuritySettings
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from gateway.admin import AdminApi, add_admin_routes
from gateway.auth import JwtVerifier
from gateway.call_gate import CallGate, MethodLimits
from gateway.fast_path import install_fast_path
from gateway.health import add_health_routes
from gateway.http_headers import StripHeaderWhitespace
from gateway.mcp_server import TaskgateMCP
from gateway.metrics import (
    GatewayMetrics,
    ReadModelCollector,
    ToolCallObserver,
    backend_error_counter,
)
from gateway.ratelimit import CallLimits
from gateway.replica_lag import sample_replica_lag
from gateway.runtime import Runtime, RuntimeRef, open_runtime
from gateway.served_app import ServedApp, load_served_app
from gateway.stateless_get import RefuseStandaloneStream
from gateway.tools.bench import register_bench_tools
from gateway.tools.read import CachedReadOf, register_read_tools
from gateway.tools.write import register_write_tools
from shared.metrics_endpoint import MetricsEndpoint
from shared.settings import Settings

# The tool list changes only when the gateway is redeployed; each client keeps its own copy
# ("private": the list sits behind the caller's authorization).
TOOLS_LIST_HINT = CacheHint(ttl_ms=300_000, scope="private")


def build_server(
    settings: Settings, app: ServedApp | None = None
) -> tuple[TaskgateMCP, RuntimeRef]:
    """The server, and the holder of its Runtime (filled while the server's lifespan runs).
    `app`: the app spec served (loaded from TASKGATE_APP when not given)."""
    server, ref, _ = _build(settings, app or load_served_app(settings))
    return server, ref


@dataclass(frozen=True)
class _Served:
    """The tools the fast path may answer: the table of read tools, and the write tools."""

    reads: dict[str, CachedReadOf]
    writes: list[str]


def _build(settings: Settings, app: ServedApp) -> tuple[TaskgateMCP, RuntimeRef, _Served]:
    ref = RuntimeRef()
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    registry.register(ReadModelCollector(ref))
    metrics_endpoint = MetricsEndpoint.for_gateway(settings, registry)

    @asynccontextmanager
    async def lifespan(_server: object) -> AsyncIterator[Runtime]:
        async with (
            open_runtime(
                settings,
                app.reads,
                on_response=[backend_error_counter(metrics)],
                auth_for=app.auth_for,
                user_ids=app.user_ids,
                liveness_path=app.spec.health_path,
            ) as rt,
            contextlib.AsyncExitStack() as background,
        ):
            background.enter_context(ref.holding(rt))
            background.enter_context(metrics_endpoint.own_port())
            lag = sample_replica_lag(
                rt.reader.replicas,
                metrics,
                settings.replica_lag_sample_seconds,
                settings.replica_timeout,
            )
            jobs = [lag] if rt.ttl_store is None else [lag, rt.ttl_store.run()]
            for job in jobs:
                background.push_async_callback(_cancelled, asyncio.create_task(job))
            yield rt

    auth = None
    verifier: TokenVerifier | None = None
    if settings.auth_mode == "token":
        verifier = app.verifier or JwtVerifier(settings)
        auth = AuthSettings(
            issuer_url=settings.backend_url,  # the backend is the authorization server
            resource_server_url=settings.mcp_url,
            validate_token_resource=False,  # JwtVerifier checks the audience itself
        )
    limits = CallLimits(settings, lambda: ref.get().buckets, metrics.rate_limited)
    server = TaskgateMCP(
        gate=CallGate(settings, ToolCallObserver(metrics), limits, app.user_ids),
        name=app.spec.name,
        instructions=app.spec.instructions,
        version="0.1.0",
        token_verifier=verifier,
        auth=auth,
        lifespan=lifespan,
        cache_hints={"tools/list": TOOLS_LIST_HINT},
        middleware=[MethodLimits(limits, app.user_ids)],
    )
    lookups = register_read_tools(server, settings, ref, app.reads, app.user_ids)
    writes = register_write_tools(server, settings, ref, app.writes, app.user_ids)
    if settings.mcp_bench_tools:
        register_bench_tools(server)
    add_health_routes(server, ref)  # /healthz, /readyz
    add_admin_routes(server, AdminApi(settings, ref))  # /admin/cache...
    server.custom_route("/metrics", methods=["GET"])(metrics_endpoint.scrape)
    return server, ref, _Served(lookups, writes)


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection: only the deployment's own Host and Origin values are served.

    MCP_ALLOWED_HOSTS / MCP_ALLOWED_ORIGINS replace the defaults: loopback, MCP_HOST, and the
    host of MCP_PUBLIC_URL.
    """
    public = urlsplit(settings.mcp_url)
    hosts = settings.mcp_allowed_hosts or [
        "127.0.0.1:*",
        "localhost:*",
        "[::1]:*",
        f"{settings.mcp_host}:*",
        public.netloc,
    ]
    origins = settings.mcp_allowed_origins or [
        "http://127.0.0.1:*",
        "http://localhost:*",
        "http://[::1]:*",
        f"{public.scheme}://{public.netloc}",
    ]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(dict.fromkeys(hosts)),
        allowed_origins=list(dict.fromkeys(origins)),
    )


def build_http_app(settings: Settings, app: ServedApp | None = None) -> Starlette:
    server, ref, served = _build(settings, app or load_served_app(settings))
    security = transport_security(settings)
    http_app = server.streamable_http_app(
        streamable_http_path=settings.mcp_path,
        stateless_http=settings.mcp_stateless,
        json_response=settings.mcp_json_response,
        transport_security=security,
        max_request_body_size=settings.max_body_bytes,
        host=settings.mcp_host,
    )
    # Added first, so it runs inside StripHeaderWhitespace and sees the headers the SDK sees.
    install_fast_path(http_app, settings, server, ref, security, served.reads, served.writes)
    http_app.add_middleware(StripHeaderWhitespace)
    if settings.mcp_stateless:
        http_app.add_middleware(RefuseStandaloneStream, path=settings.mcp_path)
    return http_app
