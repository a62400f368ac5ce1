"""The write path's HTTP client: one pooled httpx.AsyncClient to the backend, one error mapping."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from shared.errors import ErrorCode, ErrorEnvelope, TaskgateError
from shared.settings import Settings

log = logging.getLogger(__name__)

API = "/api/v1"
LSN_HEADER = "X-Commit-LSN"


@dataclass(frozen=True)
class BackendReply:
    body: Any
    commit_lsn: str | None


def create_http_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=settings.fastapi_base_url,
        timeout=httpx.Timeout(
            connect=settings.backend_connect_timeout,
            read=settings.backend_read_timeout,
            write=settings.backend_write_timeout,
            pool=settings.backend_pool_timeout,
        ),
        limits=httpx.Limits(
            max_connections=settings.backend_max_connections,
            max_keepalive_connections=settings.backend_max_keepalive,
        ),
        headers={"User-Agent": "taskgate-gateway"},
    )


def error_from_response(response: httpx.Response) -> TaskgateError:
    """The backend's envelope passes through; anything else maps by status."""
    try:
        return TaskgateError.from_envelope(ErrorEnvelope.model_validate_json(response.content))
    except ValidationError:
        pass
    if response.status_code == 401:
        return TaskgateError(ErrorCode.UNAUTHORIZED, "the backend refused the credentials")
    if response.status_code >= 500:
        return TaskgateError(
            ErrorCode.SERVER_ERROR,
            "the backend failed to handle the request",
            {"status": response.status_code},
        )
    code = {
        403: ErrorCode.FORBIDDEN,
        404: ErrorCode.NOT_FOUND,
        409: ErrorCode.CONFLICT,
        422: ErrorCode.VALIDATION_ERROR,
        429: ErrorCode.RATE_LIMITED,
    }.get(response.status_code, ErrorCode.BAD_REQUEST)
    return TaskgateError(
        code, f"the backend answered {response.status_code}", {"status": response.status_code}
    )


class BackendClient:
    """Calls the backend's REST API with the caller's credentials (an httpx.Auth)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def request(
        self,
        method: str,
        path: str,
        auth: httpx.Auth,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> BackendReply:
        try:
            response = await self.http.request(
                method, API + path, json=json, headers=headers, auth=auth
            )
        except httpx.TimeoutException as exc:
            raise TaskgateError(
                ErrorCode.BACKEND_UNAVAILABLE,
                "the backend did not answer in time; the write may or may not have happened, "
                "and retrying the same call is safe",
                {"reason": type(exc).__name__},
            ) from None
        except httpx.TransportError as exc:
            raise TaskgateError(
                ErrorCode.BACKEND_UNAVAILABLE,
                "the backend cannot be reached; retry shortly",
                {"reason": type(exc).__name__},
            ) from None
        if response.status_code >= 400:
            raise error_from_response(response)
        body = response.json() if response.content else None
        return BackendReply(body=body, commit_lsn=response.headers.get(LSN_HEADER))

    async def login(self, email: str, password: str) -> str:
        try:
            response = await self.http.post(
                API + "/auth/token", data={"username": email, "password": password}
            )
        except httpx.TransportError as exc:
            raise TaskgateError(
                ErrorCode.BACKEND_UNAVAILABLE,
                "the backend cannot be reached to log in",
                {"reason": type(exc).__name__},
            ) from None
        if response.status_code >= 400:
            raise error_from_response(response)
        token: str = response.json()["access_token"]
        return token
