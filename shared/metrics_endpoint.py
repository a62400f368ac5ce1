"""Where Prometheus scrapes a server: /metrics on its own port, behind a token, or a port of
its own. The gateway and the backend each use one.

The operator picks: METRICS_PORT (the gateway's) or BACKEND_METRICS_PORT serves the metrics on
that port only (on the server's host), for a network that only the scraper reaches;
METRICS_TOKEN makes /metrics on the server's port ask for it as a bearer token. With neither,
/metrics is public on the server's port (counters and lag, no user data), as before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.exposition import start_http_server
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shared.errors import ErrorCode, TaskgateError
from shared.settings import Settings
from shared.tokens import require_static_bearer

log = logging.getLogger(__name__)


class MetricsEndpoint:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        port: int,
        host: str,
        token: SecretStr | None,
        server: str,
    ) -> None:
        self._registry = registry
        self._port = port
        self._host = host
        self._token = (token.get_secret_value() if token else "").encode()
        self._server = server  # "gateway" or "backend", in the not_found message

    @property
    def registry(self) -> CollectorRegistry:
        return self._registry

    @classmethod
    def for_gateway(cls, settings: Settings, registry: CollectorRegistry) -> MetricsEndpoint:
        return cls(
            registry,
            port=settings.metrics_port,
            host=settings.mcp_host,
            token=settings.metrics_token,
            server="gateway",
        )

    @classmethod
    def for_backend(cls, settings: Settings, registry: CollectorRegistry) -> MetricsEndpoint:
        return cls(
            registry,
            port=settings.backend_metrics_port,
            host=settings.backend_host,
            token=settings.metrics_token,
            server="backend",
        )

    def _check(self, request: Request) -> None:
        if self._port:
            raise TaskgateError(
                ErrorCode.NOT_FOUND, f"metrics are served on the {self._server}'s metrics port"
            )
        if not self._token:
            return
        require_static_bearer(request.headers.get("Authorization", ""), self._token, "metrics")

    async def scrape(self, request: Request) -> Response:
        """GET /metrics on the server's port."""
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
        """While the server runs: the metrics port's server, when its port is set."""
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
