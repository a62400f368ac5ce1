"""JWTs that the backend issues and both the backend and the gateway verify."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from shared.settings import Settings

ALGORITHM = "HS256"


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    expires_at: int
    issued_at: int


def issue_token(settings: Settings, user_id: int, ttl_seconds: int | None = None) -> str:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + (ttl_seconds or settings.jwt_ttl_seconds),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)


def verify_token(settings: Settings, token: str) -> TokenClaims:
    """Verify signature, expiry, issuer and audience. Raises jwt.InvalidTokenError."""
    claims = jwt.decode(
        token,
        settings.jwt_secret.get_secret_value(),
        algorithms=[ALGORITHM],  # pinned: no alg=none, no RS/HS confusion
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        options={"require": ["sub", "exp", "iat", "iss", "aud"]},
    )
    sub = claims["sub"]
    # ASCII digits within bigint: str.isdigit() alone also takes '²', which int() refuses.
    if not isinstance(sub, str) or not (sub.isascii() and sub.isdigit()) or len(sub) > 18:
        raise jwt.InvalidTokenError("subject is not a user id")
    return TokenClaims(
        user_id=int(sub), expires_at=int(claims["exp"]), issued_at=int(claims["iat"])
    )
