"""The backend's composition root: create_app(settings) wires the engine, routes and errors."""

from __future__ import annotations

import asyncio
import contextlib
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
from backend.oauth.registration import REGISTRATION_MAX_BYTES
from backend.oauth.server import install_oauth
from backend.pruning import prune_periodically
from backend.rate_limits import Buckets
from backend.request_log import RequestLog
from backend.routes import auth, health, tasks, users
from backend.security import PasswordHashing
from backend.user_limit import UserLimit
from shared.api import API_PREFIX, OAUTH_REGISTER_PATH
from shared.metrics_endpoint import MetricsEndpoint
from shared.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_write_engine(settings)
        app.state.engine = engine
        app.state.sessions = create_session_factory(engine)
        app.state.hashing = PasswordHashing(settings)
        app.state.login_limits = LoginLimits(settings)
        app.state.signup_limits = Buckets(
            settings.signup_address_per_hour / 3600,
            settings.signup_address_burst,
            settings.login_limit_entries,
            "sign-ups from this address",
        )
        pruning = asyncio.create_task(prune_periodically(app.state.sessions, settings))
        try:
            with metrics_endpoint.own_port():
                yield
        finally:
            pruning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruning
            app.state.hashing.close()
            await engine.dispose()

    app = FastAPI(title="taskgate backend", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.log = logging.getLogger("backend")
    # Made here, not in the lifespan: UserLimit (built before the lifespan runs) needs it.
    app.state.user_limits = Buckets(
        settings.rest_rate_limit_per_user,
        settings.rest_rate_limit_burst,
        settings.login_limit_entries,
        "requests from this user",
    )
    install_error_handlers(app)
    # Added last, so outermost: even the size limit's failures leave as an envelope.
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        smaller={OAUTH_REGISTER_PATH: REGISTRATION_MAX_BYTES},
    )
    app.add_middleware(UnhandledErrors)
    app.add_middleware(OAuthErrorEnvelope)  # OAuth's error bodies also carry the envelope
    metrics = BackendMetrics(CollectorRegistry())
    metrics_endpoint = MetricsEndpoint.for_backend(settings, metrics.registry)
    # Before routing, inside the metrics and the log: a refusal is still counted and logged.
    app.add_middleware(UserLimit, settings=settings, limits=app.state.user_limits)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(RequestLog)  # outermost: logs the status the client gets
    app.add_route("/metrics", metrics_endpoint.scrape, include_in_schema=False)
    for router in (users.router, auth.router, tasks.router):
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(health.router)
    install_oauth(app, settings)  # the OAuth 2.1 authorization server for MCP clients
    metrics.start_at_zero(app.routes)
    return app
