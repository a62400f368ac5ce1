"""Where Prometheus scrapes the gateway: /metrics on the MCP port, behind a token, or a port
of its own.

The operator picks: METRICS_PORT serves the metrics on that port only (MCP_HOST), for a
network that only the scraper reaches; METRICS_TOKEN makes /metrics on the MCP port ask for
it as a bearer token. With neither, /metrics is public on the MCP port (counters and lag, no
user data), as before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.exposition import start_http_server
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shared.errors import ErrorCode, TaskgateError
from shared.settings import Settings
from shared.tokens import require_static_bearer

log = logging.getLogger(__name__)


class MetricsEndpoint:
    def __init__(self, settings: Settings, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._port = settings.metrics_port
        self._host = settings.mcp_host
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
        self._token = token.encode()

    def _check(self, request: Request) -> None:
        if self._port:
            raise TaskgateError(
                ErrorCode.NOT_FOUND, "metrics are served on the gateway's metrics port"
            )
        if not self._token:
            return
        require_static_bearer(request.headers.get("Authorization", ""), self._token, "metrics")

    async def scrape(self, request: Request) -> Response:
        """GET /metrics on the MCP port."""
        try:
            self._check(request)
        except TaskgateError as exc:
            return JSONResponse(
                exc.envelope().model_dump(mode="json"),
                status_code=exc.http_status,
                headers=exc.http_headers,
            )
        return Response(generate_latest(self._registry), media_type=CONTENT_TYPE_LATEST)

    @contextmanager
    def own_port(self) -> Iterator[None]:
        """While the gateway runs: the metrics port's server, when METRICS_PORT is set."""
        if not self._port:
            yield
            return
        # prometheus_client's own server (a thread), so a scrape never waits on the MCP loop.
        server, thread = start_http_server(self._port, addr=self._host, registry=self._registry)
        log.info("metrics on http://%s:%d/metrics", self._host, self._port)
        try:
            yield
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
