"""Who is calling a tool: the bearer token (HTTP), configured credentials (stdio), or, in the
opt-in trusted mode, a `user_id` argument that the gateway vouches for with a service token.

resolve_principal is the one rule for whom a call is for. The call gate (gateway.call_gate)
runs it once per call, for the SDK path and the fast path alike, hands the result to the rate
limit and binds it for the call; Identity.caller reads what was bound.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import httpx
import jwt
from mcp.server.auth.provider import AccessToken

from gateway.app_auth import AppAuthFor
from gateway.auth import BearerAuth, ExchangeAuth, LoginAuth, TokenExchanger
from gateway.backend_client import BackendClient
from shared.errors import ErrorCode, TaskgateError
from shared.settings import Settings
from shared.tokens import issue_token, verify_gateway_token, verify_token
from shared.user_ids import INT_IDS, UserId, UserIds

log = logging.getLogger(__name__)

SERVICE_TOKEN_TTL = 60  # seconds: a trusted-mode token lives for one call, with slack for retries

P = ParamSpec("P")
R = TypeVar("R")

# The integer kind's rule by its old name (the task service's, and its tests').
user_id_of = INT_IDS.parse


@dataclass(frozen=True)
class Principal:
    """Whom one tool call is for, as resolve_principal found it."""

    user_id: UserId | None  # None: the process's configured credentials (stdio, in-process)
    access: AccessToken | None  # the verified bearer; None in trusted mode and stdio

    @property
    def limit_key(self) -> str | None:
        """The rate limit's key: None for configured credentials (one user, its only caller)."""
        return None if self.user_id is None else str(self.user_id)


def resolve_principal(
    trusted: bool,
    access: AccessToken | None,
    arguments: Mapping[str, Any],
    user_ids: UserIds = INT_IDS,  # the gate passes the app's; the task service's by default
) -> Principal:
    """The one rule for whom a call is for: trusted mode's `user_id` argument, else the bearer
    token's subject, else (no bearer: stdio, in-process) the configured credentials; an id of
    the app's kind (`user_ids`), in its one spelling."""
    if trusted:
        user_id = user_ids.parse(arguments.get("user_id"))
        if user_id is None:
            raise _bad_user_id_argument(user_ids, "user_id" not in arguments)
        return Principal(user_id, None)
    if access is None:
        return Principal(None, None)
    user_id = user_ids.parse(access.subject)
    if user_id is None:  # a verifier that names no user of this service
        raise TaskgateError(ErrorCode.UNAUTHORIZED, "the bearer token names no user")
    return Principal(user_id, access)


def _bad_user_id_argument(user_ids: UserIds, missing: bool) -> TaskgateError:
    return TaskgateError(
        ErrorCode.VALIDATION_ERROR,
        "user_id is required" if missing else f"user_id must be {user_ids.spelling}",
        {
            "errors": [
                {
                    "field": "user_id",
                    "type": "missing" if missing else "user_id_type",
                    "message": user_ids.expected,
                }
            ]
        },
    )


_principal: ContextVar[Principal | None] = ContextVar("taskgate_principal", default=None)


@contextmanager
def acting_for(principal: Principal) -> Iterator[None]:
    """Bind the call's principal while the tool runs (Identity.caller reads it)."""
    bound = _principal.set(principal)
    try:
        yield
    finally:
        _principal.reset(bound)


@dataclass(frozen=True)
class Caller:
    user_id: UserId
    auth: httpx.Auth


def _user_of(
    settings: Settings, user_ids: UserIds, token: str, what: str, *, gateway: bool = False
) -> UserId:
    try:
        if gateway:
            subject = verify_gateway_token(settings, token).user_id
        else:
            subject = verify_token(settings, token, subjects=(user_ids,)).user_id
    except jwt.InvalidTokenError:
        raise TaskgateError(
            ErrorCode.UNAUTHORIZED,
            f"{what} is not a valid token for this gateway: signed with another JWT_SECRET, "
            f"expired, or issued for another audience than {settings.mcp_url}"
            if gateway
            else f"{what} is not a valid token for this gateway's JWT_SECRET",
        ) from None
    user_id = user_ids.parse(subject)
    if user_id is None:
        raise TaskgateError(
            ErrorCode.UNAUTHORIZED,
            f"{what} names no user of this app: its ids are {user_ids.name}s",
        )
    return user_id


class Identity:
    """Resolves the caller of each tool call, by AUTH_MODE and transport."""

    def __init__(
        self,
        settings: Settings,
        backend: BackendClient,
        auth_for: AppAuthFor | None,
        user_ids: UserIds,
    ) -> None:
        self._settings = settings
        self._backend = backend
        self._user_ids = user_ids  # the app's kind: configured credentials must name one
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
                    _user_of(settings, user_ids, token, "GATEWAY_TOKEN", gateway=True),
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
        """The caller of the running tool call, from the principal the call gate bound."""
        principal = _principal.get()
        if self._settings.auth_mode == "user_param":
            return self._trusted_caller(principal)
        if principal is not None and principal.user_id is not None and principal.access:
            user_id, token = principal.user_id, principal.access.token
            if self._auth_for is not None:
                return Caller(user_id, self._auth_for(user_id, token))
            # Never passed through: the backend gets a token exchanged for it.
            return Caller(user_id, ExchangeAuth(self._exchanger, token))
        if self._token_caller is not None:
            return self._token_caller
        if self._config_error is not None:
            error = self._config_error
            raise TaskgateError(error.code, error.message, error.details)
        if self._login is not None:
            token = self._login.token or await self._backend.log_in(self._login)
            user_id = _user_of(self._settings, self._user_ids, token, "the backend's login token")
            return Caller(user_id, self._login)
        raise TaskgateError(
            ErrorCode.UNAUTHORIZED,
            "no credentials: send a bearer token, or configure GATEWAY_TOKEN or "
            "GATEWAY_EMAIL and GATEWAY_PASSWORD for stdio",
        )

    def _trusted_caller(self, principal: Principal | None) -> Caller:
        if principal is None or principal.user_id is None:
            raise TaskgateError(
                ErrorCode.VALIDATION_ERROR, "user_id is required", {"field": "user_id"}
            )
        user_id = principal.user_id
        if self._auth_for is not None:
            return Caller(user_id, self._auth_for(user_id, None))
        token = issue_token(self._settings, user_id, ttl_seconds=SERVICE_TOKEN_TTL)
        return Caller(user_id, BearerAuth(token))


def identified(
    settings: Settings, user_ids: UserIds
) -> Callable[[Callable[P, Awaitable[R]]], Callable[..., Any]]:
    """Decorates a tool. In trusted mode (AUTH_MODE=user_param) the tool also takes a required
    `user_id` of the app's kind, for its input schema: the call gate resolves it
    (resolve_principal) and Identity.caller() reads that; in token mode the tool is unchanged."""
    argument = user_ids.argument()

    def decorate(tool: Callable[P, Awaitable[R]]) -> Callable[..., Any]:
        if settings.auth_mode != "user_param":
            return tool

        @functools.wraps(tool)
        async def with_user_id(*args: Any, user_id: UserId, **kwargs: Any) -> R:
            return await tool(*args, **kwargs)

        # The SDK builds the input schema from the signature: publish user_id first.
        signature = inspect.signature(tool, eval_str=True)
        user_param = inspect.Parameter(
            "user_id", inspect.Parameter.KEYWORD_ONLY, annotation=argument
        )
        keyword_only = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values()
        ]
        with_user_id.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[user_param, *keyword_only]
        )
        return with_user_id

    return decorate
