"""The backend's composition root: create_app(settings) wires the engine, routes and errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from backend.db import create_session_factory, create_write_engine
from backend.errors import install_error_handlers
from backend.login_limits import LoginLimits
from backend.metrics import BackendMetrics, RequestMetrics
from backend.middleware import BodySizeLimit, UnhandledErrors
from backend.oauth.envelope import OAuthErrorEnvelope
from backend.oauth.server import install_oauth
from backend.request_log import RequestLog
from backend.routes import auth, health, tasks, users
from backend.security import PasswordHashing
from shared.api import API_PREFIX
from shared.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_write_engine(settings)
        app.state.engine = engine
        app.state.sessions = create_session_factory(engine)
        app.state.hashing = PasswordHashing(settings)
        app.state.login_limits = LoginLimits(settings)
        try:
            yield
        finally:
            app.state.hashing.close()
            await engine.dispose()

    app = FastAPI(title="taskgate backend", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.log = logging.getLogger("backend")
    install_error_handlers(app)
    # Added last, so outermost: even the size limit's failures leave as an envelope.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(UnhandledErrors)
    app.add_middleware(OAuthErrorEnvelope)  # OAuth's error bodies also carry the envelope
    metrics = BackendMetrics(CollectorRegistry())
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(RequestLog)  # outermost: logs the status the client gets
    app.add_route("/metrics", metrics.scrape, include_in_schema=False)
    for router in (users.router, auth.router, tasks.router):
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(health.router)
    install_oauth(app, settings)  # the OAuth 2.1 authorization server for MCP clients
    metrics.start_at_zero(app.routes)
    return app
