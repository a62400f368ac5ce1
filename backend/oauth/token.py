"""The /token endpoint: the SDK's handler for the authorization_code and refresh_token grants,
plus RFC 8693 token exchange, by which the gateway swaps an agent's gateway token for a
short-lived backend token instead of passing the agent's token through."""

from __future__ import annotations

import time
from typing import Any

import jwt
from mcp.server.auth.handlers.token import TokenHandler
from mcp.server.auth.middleware.client_auth import AuthenticationError, ClientAuthenticator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from backend.oauth.provider import TaskgateOAuthProvider, requested_resource
from shared.settings import Settings
from shared.tokens import (
    ACCESS_TOKEN_TYPE,
    GATEWAY_CLIENT_ID,
    TOKEN_EXCHANGE_GRANT,
    issue_token,
    verify_token,
)

JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=_NO_STORE
    )


def _field(form: Any, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


class TokenEndpoint:
    def __init__(self, settings: Settings, provider: TaskgateOAuthProvider) -> None:
        self._settings = settings
        self._provider = provider
        self._clients = ClientAuthenticator(provider)
        self._sdk = TokenHandler(provider, self._clients)

    async def handle(self, request: Request) -> Response:
        form = await request.form()  # Starlette keeps it: the SDK's handler reads it again
        resource = _field(form, "resource")
        if resource is not None and self._provider.audience_for(resource) is None:
            return oauth_error("invalid_target", "this server issues no tokens for that resource")
        if _field(form, "grant_type") == TOKEN_EXCHANGE_GRANT:
            return await self._exchange(request, form)
        bound = requested_resource.set(resource)
        try:
            response: Response = await self._sdk.handle(request)
            return response
        finally:
            requested_resource.reset(bound)

    async def _exchange(self, request: Request, form: Any) -> Response:
        try:
            client = await self._clients.authenticate_request(request)
        except AuthenticationError as exc:
            return oauth_error("invalid_client", exc.message, 401)
        if client.client_id != GATEWAY_CLIENT_ID:
            return oauth_error("unauthorized_client", "only the gateway may exchange tokens")
        if _field(form, "subject_token_type") not in (ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE):
            return oauth_error("invalid_request", f"subject_token_type must be {ACCESS_TOKEN_TYPE}")
        target = _field(form, "audience") or _field(form, "resource") or self._settings.jwt_audience
        if self._provider.audience_for(target) != self._settings.jwt_audience:
            return oauth_error("invalid_target", "token exchange issues backend tokens only")
        try:
            subject = verify_token(
                self._settings,
                _field(form, "subject_token") or "",
                audience=self._settings.gateway_audiences,  # a token for any of our gateways
            )
        except jwt.InvalidTokenError:
            return oauth_error("invalid_grant", "subject_token is not a valid gateway token")
        # Short-lived, and never outliving the token it was exchanged for.
        ttl = min(self._settings.backend_token_ttl_seconds, subject.expires_at - int(time.time()))
        if ttl < 1:
            return oauth_error("invalid_grant", "subject_token has expired")
        token = issue_token(self._settings, subject.user_id, ttl, client_id=GATEWAY_CLIENT_ID)
        body = {
            "access_token": token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": ttl,
        }
        return JSONResponse(body, headers=_NO_STORE)
