"""The backend's one edge mapping: every 4xx and 5xx leaves as the shared envelope."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from shared.errors import (
    ErrorCode,
    ErrorEnvelope,
    TaskgateError,
    error_code_for_status,
    validation_error,
)

log = logging.getLogger(__name__)

# SQLSTATEs that mean "the database cannot serve right now", not "this request is wrong":
# connection failures (08), shutdown and statement timeout (57), out of resources (53),
# serialization failure and deadlock (40), and a primary that has become read-only (25006).
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "57", "53", "40", "25006")

RETRY_AFTER_SECONDS = "1"


def envelope_response(
    status: int,
    code: ErrorCode,
    message: str,
    details: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorEnvelope(error_code=code, message=message, details=details or {})
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def error_response(exc: TaskgateError) -> JSONResponse:
    """A TaskgateError as the envelope, with its status and headers (Retry-After)."""
    return envelope_response(exc.http_status, exc.code, exc.message, exc.details, exc.http_headers)


def _is_malformed_json(exc: RequestValidationError) -> bool:
    return any(err.get("type") == "json_invalid" for err in exc.errors())


def _is_unsupported_media_type(request: Request, exc: RequestValidationError) -> bool:
    # FastAPI reads a JSON body only when the content type says JSON; otherwise the whole
    # body fails as "not an object", which would hide the real mistake.
    content_type = request.headers.get("content-type", "")
    return (
        bool(content_type)
        and "json" not in content_type
        and any(
            tuple(err.get("loc", ())) == ("body",) and err.get("type") == "model_attributes_type"
            for err in exc.errors()
        )
    )


def database_unavailable(exc: Exception) -> bool:
    """Whether a database error means the primary cannot serve now, so a retry may work."""
    if isinstance(exc, PoolTimeoutError | OSError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES)
    return False


def _unavailable_response() -> JSONResponse:
    return envelope_response(
        503,
        ErrorCode.BACKEND_UNAVAILABLE,
        "the database is unavailable; retry shortly",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map known exceptions. Anything else is caught by UnhandledErrors (middleware.py)."""

    @app.exception_handler(TaskgateError)
    async def _taskgate(_: Request, exc: TaskgateError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if _is_malformed_json(exc):
            return envelope_response(400, ErrorCode.BAD_REQUEST, "request body is not valid JSON")
        if _is_unsupported_media_type(request, exc):
            return envelope_response(
                415, ErrorCode.BAD_REQUEST, "send the body as JSON (Content-Type: application/json)"
            )
        error = validation_error(exc.errors(), "request is not valid", located=True)
        return envelope_response(error.http_status, error.code, error.message, error.details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = error_code_for_status(exc.status_code)
        message = str(exc.detail)
        headers = exc.headers
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route matches {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
        return envelope_response(exc.status_code, code, message, headers=headers)

    async def _database(request: Request, exc: Exception) -> JSONResponse:
        if not database_unavailable(exc):
            raise exc  # a bug, not an outage: UnhandledErrors answers 500
        log.warning(
            "database unavailable on %s %s: %s", request.method, request.url.path, _kind(exc)
        )
        return _unavailable_response()

    for kind in (DBAPIError, PoolTimeoutError, OSError, TimeoutError):
        app.add_exception_handler(kind, _database)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette lists only the first route's)."""
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    ]


def _kind(exc: BaseException) -> str:
    # The class and SQLSTATE only: driver messages can carry statement parameters.
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return f"{type(exc).__name__}" + (f" (SQLSTATE {sqlstate})" if sqlstate else "")
