"""JWTs that the backend issues, one audience each: the backend's own (JWT_AUDIENCE) for its REST
API, or a gateway's resource URL (MCP_PUBLIC_URL) for MCP. Neither side accepts the other's."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass

import jwt

from shared.errors import ErrorCode, TaskgateError
from shared.settings import Settings
from shared.user_ids import INT_IDS, UUID_IDS, UserId, UserIds, parse_as_any

ALGORITHM = "HS256"
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"  # RFC 8693
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
# The one client allowed to exchange a gateway token for a backend token.
GATEWAY_CLIENT_ID = "taskgate-gateway"
# The user id kinds a gateway token may name: the backend's own tokens name integer ids, and the
# gateway of an app with UUID ids (shared.user_ids) takes its tokens' UUIDs; the caller's kind is
# checked against the app's when the call is resolved (gateway.identity).
GATEWAY_SUBJECTS: tuple[UserIds, ...] = (INT_IDS, UUID_IDS)


@dataclass(frozen=True)
class TokenClaims:
    user_id: UserId
    expires_at: int
    issued_at: int


def issue_token(
    settings: Settings,
    user_id: UserId,
    ttl_seconds: int | None = None,
    *,
    audience: str | None = None,
    client_id: str | None = None,
) -> str:
    """A token for one audience: the backend's (the default) or a gateway's resource URL."""
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + (ttl_seconds or settings.jwt_ttl_seconds),
        "iss": settings.jwt_issuer,
        "aud": audience or settings.jwt_audience,
        "jti": uuid.uuid4().hex,
    }
    if client_id is not None:
        claims["client_id"] = client_id  # RFC 9068: the OAuth client the token was issued to
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)


def issue_gateway_token(settings: Settings, user_id: UserId, ttl_seconds: int | None = None) -> str:
    """A token that the gateway at MCP_PUBLIC_URL accepts, and the backend's REST API refuses."""
    return issue_token(settings, user_id, ttl_seconds, audience=settings.mcp_url)


def verify_token(
    settings: Settings,
    token: str,
    audience: str | list[str] | None = None,
    subjects: tuple[UserIds, ...] = (INT_IDS,),
) -> TokenClaims:
    """Verify signature, expiry, issuer and audience (the backend's unless named; with a list,
    any one of them), and that the subject is a user id of one of `subjects`' kinds (the
    backend's integers unless named). Raises jwt.InvalidTokenError."""
    claims = jwt.decode(
        token,
        settings.jwt_secret.get_secret_value(),
        algorithms=[ALGORITHM],  # pinned: no alg=none, no RS/HS confusion
        audience=audience or settings.jwt_audience,
        issuer=settings.jwt_issuer,
        options={"require": ["sub", "exp", "iat", "iss", "aud"]},
    )
    sub = claims["sub"]
    user_id = parse_as_any(subjects, sub)
    if not isinstance(sub, str) or user_id is None:
        raise jwt.InvalidTokenError("subject is not a user id")
    return TokenClaims(user_id=user_id, expires_at=int(claims["exp"]), issued_at=int(claims["iat"]))


def verify_gateway_token(settings: Settings, token: str) -> TokenClaims:
    """A token for this gateway, naming a user id of either kind (GATEWAY_SUBJECTS)."""
    return verify_token(settings, token, audience=settings.mcp_url, subjects=GATEWAY_SUBJECTS)


def gateway_client_secret(settings: Settings) -> str:
    """The gateway's OAuth client secret for token exchange, derived from JWT_SECRET on both sides,
    so there is no second secret to deploy and an agent (which never holds JWT_SECRET) cannot
    exchange its own gateway token."""
    key = settings.jwt_secret.get_secret_value().encode()
    return hmac.new(
        key, b"oauth-client-secret:" + GATEWAY_CLIENT_ID.encode(), hashlib.sha256
    ).hexdigest()


def require_static_bearer(authorization: str, token: bytes, what: str) -> None:
    """An operator's fixed token (ADMIN_TOKEN, METRICS_TOKEN) sent as `Bearer <token>`, compared
    in constant time so a wrong guess learns nothing from how long the refusal took."""
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token):
        raise TaskgateError(ErrorCode.UNAUTHORIZED, f"a valid {what} bearer token is required")
