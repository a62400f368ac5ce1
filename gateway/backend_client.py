"""The write path's HTTP client: one pooled httpx.AsyncClient to the backend, one error mapping,
and one typed method per backend call the tools make. The backend's REST paths live here only."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from gateway.auth import ExchangeRefused, LoginAuth, LoginRefused
from gateway.backend_transport import AiohttpTransport
from gateway.request_id import send_request_id
from readmodel.lsn import parse_lsn
from shared.api import IDEMPOTENCY_HEADER, LIVENESS_PATH, WAL_POSITION_PATH
from shared.errors import (
    ErrorCode,
    ErrorEnvelope,
    TaskgateError,
    error_code_for_status,
    validation_error,
)
from shared.settings import Settings

log = logging.getLogger(__name__)

# The request may have reached the backend: only a call with an Idempotency-Key is sent again.
_MAYBE_SENT = (httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.WriteError,
               httpx.RemoteProtocolError, httpx.ConnectTimeout)  # fmt: skip


URLS_KEPT = 4096  # distinct backend paths remembered parsed (ids in paths make many)
# Longer paths (a caller's long string argument in the path) are parsed each time, so one user's
# distinct long paths cannot fill the memo: it holds at most URLS_KEPT x this many characters.
URL_KEPT_MAX_CHARS = 256

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

ResponseHook = Callable[[httpx.Response], Awaitable[None]]


class _NoCookies(httpx.Cookies):
    """A jar that takes nothing from responses."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _CookielessClient(httpx.AsyncClient):
    """httpx's client, keeping no cookie: one client serves every user, so a cookie from one
    login must never ride on another's call. httpx reads each answer's cookies into its jar
    even when the jar's policy refuses them all (urllib copies of the request and response per
    call: 14% of a forwarded write's gateway CPU); this client's jar reads none. The refusing
    policy stays underneath, in case an httpx release reaches its jar another way."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise TypeError("the backend client keeps no cookies")


def create_http_client(
    settings: Settings,
    on_response: Sequence[ResponseHook] = (),
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """`transport`: aiohttp's pool unless given (respx's unit tests pass httpx's own)."""
    limits = httpx.Limits(
        max_connections=settings.backend_max_connections,
        keepalive_expiry=settings.backend_keepalive_seconds,
    )
    return _CookielessClient(
        base_url=settings.fastapi_base_url,
        timeout=httpx.Timeout(
            connect=settings.backend_connect_timeout,
            read=settings.backend_read_timeout,
            write=settings.backend_write_timeout,
            pool=settings.backend_pool_timeout,
        ),
        limits=limits,
        transport=transport or AiohttpTransport(limits),
        headers={"User-Agent": "taskgate-gateway"},
        # One client serves every user: a cookie from one login must never ride on another's call.
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        follow_redirects=False,
        event_hooks={"request": [send_request_id], "response": list(on_response)},
    )


def _detail_error(status: int, detail: Any) -> TaskgateError | None:
    """FastAPI's own error bodies: {"detail": "text"}, and its 422 list of validation errors."""
    if isinstance(detail, str) and status < 500:
        return TaskgateError(error_code_for_status(status), detail[:500], {"status": status})
    if isinstance(detail, list) and detail and all(isinstance(e, dict) for e in detail):
        error = validation_error(detail, "the app refused the arguments", located=True)
        first = error.details["errors"][0]
        error.message = f"the app refused the arguments: {first['field']}: {first['message']}"
        return error
    return None


def error_from_response(response: httpx.Response) -> TaskgateError:
    """The app's envelope passes through unchanged; FastAPI's {"detail": ...} bodies map to it;
    anything else maps by status."""
    try:
        return TaskgateError.from_envelope(ErrorEnvelope.model_validate_json(response.content))
    except ValidationError:
        pass
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        mapped = _detail_error(status, body["detail"])
        if mapped is not None:
            return mapped
    if status == 401:
        return TaskgateError(ErrorCode.UNAUTHORIZED, "the backend refused the credentials")
    if status >= 500:
        return TaskgateError(
            ErrorCode.SERVER_ERROR, "the backend failed to handle the request", {"status": status}
        )
    return TaskgateError(
        error_code_for_status(status), f"the backend answered {status}", {"status": status}
    )


def _unavailable(exc: httpx.TransportError) -> TaskgateError:
    if isinstance(exc, httpx.TimeoutException):
        message = (
            "the backend did not answer in time; the change may or may not have been made, "
            "so read it back before retrying"
        )
    else:
        message = "the backend cannot be reached; retry shortly"
    return TaskgateError(ErrorCode.BACKEND_UNAVAILABLE, message, {"reason": type(exc).__name__})


def _login_error(exc: LoginRefused) -> TaskgateError:
    if exc.response.status_code >= 500:
        return error_from_response(exc.response)
    return TaskgateError(
        ErrorCode.UNAUTHORIZED,
        "the backend refused the gateway's configured GATEWAY_EMAIL and GATEWAY_PASSWORD",
    )


def _exchange_error(exc: ExchangeRefused) -> TaskgateError:
    status = exc.response.status_code
    if status >= 500:
        return error_from_response(exc.response)
    if status == 401:  # the backend does not know the gateway as a client
        log.error("the backend refused the gateway's client credentials: is JWT_SECRET the same?")
        return TaskgateError(
            ErrorCode.SERVER_ERROR, "the gateway is not configured to call the backend"
        )
    return TaskgateError(
        ErrorCode.UNAUTHORIZED, "the backend refused to accept your token; log in again"
    )


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise error_from_response(response)
    return response


class BackendClient:
    """Calls the backend's REST API with the caller's credentials (an httpx.Auth)."""

    def __init__(self, http: httpx.AsyncClient, liveness_path: str = LIVENESS_PATH) -> None:
        self.http = http
        self.liveness_path = liveness_path  # the app spec's health_path
        # httpx parses a relative path and merges it into base_url on every request (100 us
        # of a forward's 1.9 ms); the same few paths come again and again, so each is parsed
        # once, merged as httpx merges it.
        self._kept_url = functools.lru_cache(maxsize=URLS_KEPT)(self._absolute)

    def _url(self, path: str) -> httpx.URL:
        return self._kept_url(path) if len(path) <= URL_KEPT_MAX_CHARS else self._absolute(path)

    def _absolute(self, path: str) -> httpx.URL:
        relative, base = httpx.URL(path), self.http.base_url
        return base.copy_with(raw_path=base.raw_path + relative.raw_path.lstrip(b"/"))

    async def send(
        self,
        method: str,
        path: str,
        auth: httpx.Auth,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """One call, answered below 400 or raised as a TaskgateError. With an idempotency key, a
        timeout or dropped connection is retried once with the same key, so the backend applies
        the call at most once."""
        headers = {IDEMPOTENCY_HEADER: idempotency_key} if idempotency_key is not None else None
        attempts = 2 if idempotency_key is not None else 1
        for attempt in range(1, attempts + 1):
            try:
                response = await self.http.request(
                    method, self._url(path), json=json, params=params, headers=headers, auth=auth
                )
            except LoginRefused as exc:
                raise _login_error(exc) from None
            except ExchangeRefused as exc:
                raise _exchange_error(exc) from None
            except _MAYBE_SENT as exc:
                if attempt == attempts:
                    raise _unavailable(exc) from None
                log.warning(
                    "backend %s %s failed (%s); retrying once with the same Idempotency-Key",
                    method,
                    path,
                    type(exc).__name__,
                )
            except httpx.TransportError as exc:
                raise _unavailable(exc) from None
            else:
                return _checked(response)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def check_alive(self) -> None:
        """Raises unless the backend process answers its liveness probe."""
        response = await self.http.get(self.liveness_path)
        response.raise_for_status()

    async def wal_position(self) -> int:
        """The primary's current WAL position, as a byte position (raises on any failure)."""
        response = await self.http.get(WAL_POSITION_PATH)
        response.raise_for_status()
        return parse_lsn(str(response.json()["lsn"]))

    async def log_in(self, auth: LoginAuth) -> str:
        """Log in now through the pooled client (at start-up), keeping the token in `auth`."""
        try:
            response = await self.http.send(auth.login_request())
            return auth.accept_login(response)
        except LoginRefused as exc:
            raise _login_error(exc) from None
        except httpx.TransportError as exc:
            raise _unavailable(exc) from None
