"""Who is calling a tool: the bearer token (HTTP), configured credentials (stdio), or, in the
opt-in trusted mode, a `user_id` argument that the gateway vouches for with a service token."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, ParamSpec, TypeVar

import httpx
import jwt
from mcp.server.auth.middleware.auth_context import get_access_token
from pydantic import Field

from gateway.app_auth import AppAuthFor
from gateway.auth import BearerAuth, ExchangeAuth, LoginAuth, TokenExchanger
from gateway.backend_client import BackendClient
from shared.errors import ErrorCode, TaskgateError
from shared.rules import UserId
from shared.settings import Settings
from shared.tokens import issue_token, verify_gateway_token, verify_token

log = logging.getLogger(__name__)

SERVICE_TOKEN_TTL = 60  # seconds: a trusted-mode token lives for one call, with slack for retries

P = ParamSpec("P")
R = TypeVar("R")

UserIdArg = Annotated[
    UserId,
    Field(description="The id of the user you act for (trusted mode: the gateway believes it)."),
]

_trusted_user: ContextVar[int | None] = ContextVar("taskgate_trusted_user", default=None)


@dataclass(frozen=True)
class Caller:
    user_id: int
    auth: httpx.Auth


def _user_of(settings: Settings, token: str, what: str, *, gateway: bool = False) -> int:
    verify = verify_gateway_token if gateway else verify_token
    try:
        return verify(settings, token).user_id
    except jwt.InvalidTokenError:
        raise TaskgateError(
            ErrorCode.UNAUTHORIZED,
            f"{what} is not a valid token for this gateway: signed with another JWT_SECRET, "
            f"expired, or issued for another audience than {settings.mcp_url}"
            if gateway
            else f"{what} is not a valid token for this gateway's JWT_SECRET",
        ) from None


class Identity:
    """Resolves the caller of each tool call, by AUTH_MODE and transport."""

    def __init__(
        self, settings: Settings, backend: BackendClient, auth_for: AppAuthFor | None = None
    ) -> None:
        self._settings = settings
        self._backend = backend
        self._auth_for = auth_for  # the app spec's way to call the app; None: token exchange
        self._exchanger = TokenExchanger(settings)
        self._token_caller: Caller | None = None
        self._login: LoginAuth | None = None
        # A configuration error is answered on every call, where the agent's user sees it.
        self._config_error: TaskgateError | None = None
        if settings.gateway_token is not None:
            token = settings.gateway_token.get_secret_value()
            try:
                self._token_caller = Caller(
                    _user_of(settings, token, "GATEWAY_TOKEN", gateway=True),
                    ExchangeAuth(self._exchanger, token),
                )
            except TaskgateError as exc:
                log.error("%s", exc.message)
                self._config_error = exc
        elif settings.gateway_email and settings.gateway_password is not None:
            self._login = LoginAuth(
                settings.fastapi_base_url,
                settings.gateway_email,
                settings.gateway_password.get_secret_value(),
            )

    async def start(self) -> None:
        """Log the configured email in at start-up. A failure is logged, and each call tries again,
        so a gateway started before its backend still comes up."""
        if self._login is None:
            return
        try:
            await self._backend.log_in(self._login)
        except TaskgateError as exc:
            log.warning("start-up login failed (%s): %s", exc.code, exc.message)

    async def caller(self) -> Caller:
        if self._settings.auth_mode == "user_param":
            return self._trusted_caller()
        access = get_access_token()
        if access is not None and access.subject is not None:
            user_id = int(access.subject)
            if self._auth_for is not None:
                return Caller(user_id, self._auth_for(user_id, access.token))
            # Never passed through: the backend gets a token exchanged for it.
            return Caller(user_id, ExchangeAuth(self._exchanger, access.token))
        if self._token_caller is not None:
            return self._token_caller
        if self._config_error is not None:
            error = self._config_error
            raise TaskgateError(error.code, error.message, error.details)
        if self._login is not None:
            token = self._login.token or await self._backend.log_in(self._login)
            return Caller(_user_of(self._settings, token, "the backend's login token"), self._login)
        raise TaskgateError(
            ErrorCode.UNAUTHORIZED,
            "no credentials: send a bearer token, or configure GATEWAY_TOKEN or "
            "GATEWAY_EMAIL and GATEWAY_PASSWORD for stdio",
        )

    def _trusted_caller(self) -> Caller:
        user_id = _trusted_user.get()
        if user_id is None:
            raise TaskgateError(
                ErrorCode.VALIDATION_ERROR, "user_id is required", {"field": "user_id"}
            )
        if self._auth_for is not None:
            return Caller(user_id, self._auth_for(user_id, None))
        token = issue_token(self._settings, user_id, ttl_seconds=SERVICE_TOKEN_TTL)
        return Caller(user_id, BearerAuth(token))


def identified(settings: Settings) -> Callable[[Callable[P, Awaitable[R]]], Callable[..., Any]]:
    """Decorates a tool. In trusted mode (AUTH_MODE=user_param) the tool also takes a required
    `user_id`, which Identity.caller() reads; in token mode the tool is unchanged."""

    def decorate(tool: Callable[P, Awaitable[R]]) -> Callable[..., Any]:
        if settings.auth_mode != "user_param":
            return tool

        @functools.wraps(tool)
        async def with_user_id(*args: Any, user_id: int, **kwargs: Any) -> R:
            bound = _trusted_user.set(user_id)
            try:
                return await tool(*args, **kwargs)
            finally:
                _trusted_user.reset(bound)

        # The SDK builds the input schema from the signature: publish user_id first.
        signature = inspect.signature(tool, eval_str=True)
        user_param = inspect.Parameter(
            "user_id", inspect.Parameter.KEYWORD_ONLY, annotation=UserIdArg
        )
        keyword_only = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values()
        ]
        with_user_id.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[user_param, *keyword_only]
        )
        return with_user_id

    return decorate
