"""Mounts the OAuth 2.1 authorization server in the backend: the MCP SDK's routes (RFC 8414
metadata, RFC 7591 registration, /authorize), our /token, and the login pages."""

from __future__ import annotations

from fastapi import FastAPI
from mcp.server.auth.handlers.metadata import MetadataHandler
from mcp.server.auth.routes import build_metadata, cors_middleware, create_auth_routes
from mcp.server.auth.settings import ClientRegistrationOptions, RevocationOptions
from mcp.shared.auth import OAuthMetadata
from pydantic import AnyHttpUrl
from starlette.routing import BaseRoute, Route

from backend.oauth import pages
from backend.oauth.authorize_errors import NoErrorRedirectBeforeLogin
from backend.oauth.provider import TaskgateOAuthProvider
from backend.oauth.registration import RegistrationThrottle, registration_buckets
from backend.oauth.token import TokenEndpoint
from shared.api import (
    OAUTH_AUTHORIZE_PATH,
    OAUTH_METADATA_PATH,
    OAUTH_REGISTER_PATH,
    OAUTH_TOKEN_PATH,
)
from shared.settings import Settings
from shared.tokens import TOKEN_EXCHANGE_GRANT


def install_oauth(app: FastAPI, settings: Settings) -> None:
    provider = TaskgateOAuthProvider(settings, app.state)
    app.state.oauth_provider = provider
    issuer = AnyHttpUrl(settings.backend_url)
    registration = ClientRegistrationOptions(enabled=True)
    revocation = RevocationOptions(enabled=False)
    metadata = build_metadata(issuer, None, registration, revocation)
    # RFC 8414 section 3.3: the issuer is exactly the URL the gateway's metadata names (AnyHttpUrl
    # alone would add a trailing slash to a bare host).
    metadata = OAuthMetadata.model_validate(
        {**metadata.model_dump(mode="json", exclude_none=True), "issuer": settings.backend_url}
    )
    # Public clients (PKCE, no secret) are what MCP clients register as; the gateway exchanges.
    metadata.token_endpoint_auth_methods_supported = [
        "none",
        "client_secret_post",
        "client_secret_basic",
    ]
    metadata.grant_types_supported = ["authorization_code", "refresh_token", TOKEN_EXCHANGE_GRANT]
    token = TokenEndpoint(settings, provider)
    ours: dict[str, BaseRoute] = {
        OAUTH_METADATA_PATH: Route(
            OAUTH_METADATA_PATH,
            endpoint=cors_middleware(MetadataHandler(metadata).handle, ["GET", "OPTIONS"]),
            methods=["GET", "OPTIONS"],
        ),
        OAUTH_TOKEN_PATH: Route(
            OAUTH_TOKEN_PATH,
            endpoint=cors_middleware(token.handle, ["POST", "OPTIONS"]),
            methods=["POST", "OPTIONS"],
        ),
    }
    for route in create_auth_routes(provider, issuer, None, registration, revocation):
        path = getattr(route, "path", "")
        if path == OAUTH_REGISTER_PATH and isinstance(route, Route):
            route.app = RegistrationThrottle(route.app, registration_buckets(settings))
        if path == OAUTH_AUTHORIZE_PATH and isinstance(route, Route):
            route.app = NoErrorRedirectBeforeLogin(route.app, app.state)
        app.router.routes.append(ours.pop(path, route))
    app.router.routes.extend(ours.values())
    app.include_router(pages.router)
