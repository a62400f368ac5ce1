"""Registered OAuth clients: redirect URI rules, and the gateway's own client for token exchange."""

from __future__ import annotations

from urllib.parse import urlsplit

from mcp.server.auth.provider import RegistrationError
from mcp.shared.auth import InvalidRedirectUriError, OAuthClientInformationFull
from pydantic import AnyUrl

from shared.settings import Settings
from shared.tokens import GATEWAY_CLIENT_ID, TOKEN_EXCHANGE_GRANT, gateway_client_secret

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]", "::1", "localhost"})
# OAuth 2.1 and RFC 8252: a redirect reaches a web client (https) or a native app's loopback
# listener (http on 127.0.0.1, [::1], or localhost). Nothing else: no custom or script schemes.
_SCHEMES = frozenset({"http", "https"})


def _is_loopback(url: AnyUrl) -> bool:
    return url.scheme == "http" and (url.host or "") in LOOPBACK_HOSTS


def _without_port(url: AnyUrl) -> tuple[str, str, str, str]:
    parts = urlsplit(str(url))
    return parts.scheme, parts.hostname or "", parts.path or "/", parts.query


def redirect_problem(uri: AnyUrl) -> str | None:
    """Why `uri` may not be a redirect URI, or None when it may."""
    if uri.scheme not in _SCHEMES:
        return "a redirect URI must be https, or http on loopback"
    if uri.username or uri.password:
        return "a redirect URI must not carry a user name or password"
    if uri.fragment is not None or "#" in str(uri):
        return "a redirect URI must not have a fragment"
    if uri.scheme == "http" and not _is_loopback(uri):
        return "an http redirect URI must be on loopback; use https"
    return None


class TaskgateClient(OAuthClientInformationFull):
    """A client whose redirect URIs are matched exactly, except that a loopback URI's port may
    differ from the registered one (RFC 8252 section 7.3: native apps pick a free port)."""

    def validate_redirect_uri(self, redirect_uri: AnyUrl | None) -> AnyUrl:
        if redirect_uri is not None and redirect_problem(redirect_uri):
            raise InvalidRedirectUriError("redirect_uri is not registered for this client")
        if redirect_uri is not None and _is_loopback(redirect_uri):
            wanted = _without_port(redirect_uri)
            for registered in self.redirect_uris or []:
                if _is_loopback(registered) and _without_port(registered) == wanted:
                    return redirect_uri
        try:
            return super().validate_redirect_uri(redirect_uri)
        except InvalidRedirectUriError:
            raise InvalidRedirectUriError(
                "redirect_uri is not registered for this client"
            ) from None


def check_redirect_uris(client: OAuthClientInformationFull) -> None:
    """Every redirect URI of a registration passes `redirect_problem`."""
    for uri in client.redirect_uris or []:
        problem = redirect_problem(uri)
        if problem:
            raise RegistrationError("invalid_redirect_uri", problem)


def gateway_client(settings: Settings) -> TaskgateClient:
    """The gateway, a confidential client that may only exchange tokens (HTTP Basic)."""
    return TaskgateClient(
        client_id=GATEWAY_CLIENT_ID,
        client_secret=gateway_client_secret(settings),
        token_endpoint_auth_method="client_secret_basic",
        grant_types=[TOKEN_EXCHANGE_GRANT],
        response_types=[],
        redirect_uris=None,
        client_name="taskgate gateway",
    )
