"""The backend's Prometheus metrics: requests by route template and status, and latency.

The registry is made by create_app, one per app, never the global one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class BackendMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "taskgate_backend_http_requests",
            "Backend HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "taskgate_backend_http_request_duration_seconds",
            "Backend HTTP request latency by route template.",
            ["route"],
            buckets=_BUCKETS,
            registry=registry,
        )

    def start_at_zero(self, routes: Iterable[BaseRoute]) -> None:
        """Each route's series at 0, for the statuses it declares (a dashboard shows 0, not "No
        data", until the first request); routes that declare none start with 200."""
        for route in routes:
            # An included router (or a mount) holds its routes under their declared templates.
            nested = getattr(getattr(route, "original_router", route), "routes", None)
            if nested is not None:
                self.start_at_zero(nested)
                continue
            path, methods = getattr(route, "path", None), getattr(route, "methods", None)
            if path is None or not methods:
                continue
            declared = {getattr(route, "status_code", None) or 200}
            declared |= {int(s) for s in getattr(route, "responses", {}) if str(s).isdigit()}
            self.latency.labels(path)
            for method in methods - {"HEAD"}:
                for status in declared:
                    self.requests.labels(method, path, str(status))

    async def scrape(self, _: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """Counts each request under its route template, so ids in paths add no label values."""

    def __init__(self, app: ASGIApp, metrics: BackendMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router leaves the matched route in the scope: its template as declared on
            # its APIRouter (FastAPI keeps the include prefix out of it), e.g. /tasks/{task_id}.
            route = str(getattr(scope.get("route"), "path", "unmatched"))
            method = scope["method"] if route != "unmatched" else "other"
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
