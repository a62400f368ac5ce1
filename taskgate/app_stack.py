"""`taskgate dev --app module:attribute`: the user's app in place of the task service's backend.

Dev loads the spec (shared.spec_loader), creates its schema (taskgate.app_schema), starts the
app under uvicorn from the working folder, and hands the gateways TASKGATE_APP. Secrets the
spec names (its token secret, a service account) are generated for the session when unset, and
given to the app and the gateways alike; the bearer token printed is one of the app's own kind.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from dataclasses import dataclass

import jwt

from gateway.openapi_tools import OpenApiError, write_operations
from readmodel.reads import SpecError, compile_reads, owner_id_kind
from shared.appspec import AppSpec, ServiceSession, SignedJwt
from shared.spec_loader import load_spec, openapi_document
from shared.tokens import issue_token
from shared.user_ids import INT_IDS, UserId
from taskgate.app_schema import SchemaError, check_app_schema

DEMO_USER_ID = 1
# An app with UUID user ids (shared.user_ids) has no "first user"; the token names this one.
DEMO_USER_UUID = "00000000-0000-4000-8000-000000000001"
DEMO_TOKEN_SECONDS = 86_400


class AppStartError(ValueError):
    """The app spec cannot be run by dev; the message says what to change."""


@dataclass(frozen=True)
class UserApp:
    reference: str  # as given to --app
    spec: AppSpec
    env: dict[str, str]  # the secrets the spec names, for the app and the gateways

    @property
    def demo_user(self) -> UserId:
        """The user dev's bearer token names, of the kind the app's owner columns hold."""
        return DEMO_USER_ID if owner_id_kind(self.spec) is INT_IDS else DEMO_USER_UUID

    @property
    def asgi(self) -> str:
        if self.spec.openapi.endswith(".json"):
            raise AppStartError(
                "dev starts the app from the spec's openapi import path: set openapi to "
                "'module:app' (not a JSON file) to run it with taskgate dev"
            )
        return self.spec.openapi

    def command(self, port: int) -> list[str]:
        """The app under uvicorn, from the working folder (where --app names its module)."""
        return [sys.executable, "-m", "uvicorn", self.asgi, "--app-dir", os.getcwd(),
                "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip

    def token(self, jwt_secret: str, mcp_url: str) -> str:
        """A bearer token for the demo user, of the kind the gateway accepts."""
        identity = self.spec.identity
        user = self.demo_user
        if identity.secret_env is None:  # taskgate's own tokens
            return issue_token_for(jwt_secret, mcp_url, user)
        now = int(time.time())
        claims: dict[str, object] = {"exp": now + DEMO_TOKEN_SECONDS, "iat": now}
        claims[identity.claim] = str(user) if identity.claim == "sub" else user
        if identity.audience:
            claims["aud"] = identity.audience
        secret = os.environ.get(identity.secret_env) or self.env[identity.secret_env]
        return jwt.encode(claims, secret, "HS256")


def issue_token_for(jwt_secret: str, mcp_url: str, user: UserId) -> str:
    from shared.settings import Settings

    settings = Settings(_env_file=None, jwt_secret=jwt_secret, mcp_public_url=mcp_url)
    return issue_token(settings, user, DEMO_TOKEN_SECONDS, audience=settings.mcp_url)


def load_user_app(reference: str) -> UserApp:
    """The spec, refused before anything starts when the gateway would refuse it: its read
    tools, its write tools and its schema, each checked as the gateway and dev check them."""
    spec = load_spec(reference)
    try:
        compile_reads(spec)
        write_operations(openapi_document(spec), spec.writes)
        check_app_schema(spec)
    except (SpecError, OpenApiError, SchemaError) as refused:
        raise AppStartError(f"app spec {reference}: {refused}") from None
    names = [spec.identity.secret_env]
    auth = spec.backend_auth
    if isinstance(auth, SignedJwt):
        names.append(auth.secret_env)
    if isinstance(auth, ServiceSession):
        names += [auth.email_env, auth.password_env]
    env = {name: secrets.token_urlsafe(32) for name in names if name and not os.environ.get(name)}
    return UserApp(reference, spec, env)
