"""The one error envelope that every taskgate edge answers with."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "validation_error"
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    CONFLICT = "conflict"
    RATE_LIMITED = "rate_limited"
    BACKEND_UNAVAILABLE = "backend_unavailable"
    REPLICA_UNAVAILABLE = "replica_unavailable"
    SERVER_ERROR = "server_error"
    BAD_REQUEST = "bad_request"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.CONFLICT: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.BACKEND_UNAVAILABLE: 503,
    ErrorCode.REPLICA_UNAVAILABLE: 503,
    ErrorCode.SERVER_ERROR: 500,
    ErrorCode.BAD_REQUEST: 400,
}


# HTTP statuses whose error code is not the inverse of HTTP_STATUS: each is a malformed request.
_BAD_REQUEST_STATUSES = (405, 413, 415)
_CODE_FOR_STATUS: dict[int, ErrorCode] = {
    **{
        status: code
        for code, status in HTTP_STATUS.items()
        if 400 <= status < 500  # 5xx codes are told apart by the server, not by the status
    },
    **dict.fromkeys(_BAD_REQUEST_STATUSES, ErrorCode.BAD_REQUEST),
}
# At most this many field errors are listed in one validation_error.
MAX_LISTED_ERRORS = 20


def error_code_for_status(status: int) -> ErrorCode:
    """The error code of an HTTP error status that came without an envelope."""
    if status >= 500:
        return ErrorCode.SERVER_ERROR
    return _CODE_FOR_STATUS.get(status, ErrorCode.BAD_REQUEST)


class ErrorEnvelope(BaseModel):
    status: Literal["error"] = "error"
    error_code: ErrorCode
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class TaskgateError(Exception):
    """An error that crosses an edge as an envelope. Raised inside, mapped once at each edge."""

    def __init__(
        self, code: ErrorCode, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    @property
    def http_headers(self) -> dict[str, str] | None:
        """What the error's HTTP answer carries besides the envelope: a 401 names the scheme
        to retry with (RFC 6750), a 429 says when to come back."""
        if self.code is ErrorCode.UNAUTHORIZED:
            return {"WWW-Authenticate": "Bearer"}
        if self.code is ErrorCode.RATE_LIMITED and "retry_after_seconds" in self.details:
            return {"Retry-After": str(self.details["retry_after_seconds"])}
        return None

    def envelope(self) -> ErrorEnvelope:
        return ErrorEnvelope(error_code=self.code, message=self.message, details=self.details)

    @classmethod
    def from_envelope(cls, envelope: ErrorEnvelope) -> TaskgateError:
        return cls(envelope.error_code, envelope.message, envelope.details)


def validation_error(
    errors: Iterable[Mapping[str, Any]], message: str, *, located: bool = False
) -> TaskgateError:
    """A validation_error listing pydantic's errors by field, rule and message.

    The rejected input is the caller's data and is never echoed back. `located`: the first item
    of each error's `loc` is where the field was (FastAPI's `body`, `query`, `path`, ...), given
    as `location`, and the field is named by the rest.
    """
    listed = []
    for err in list(errors)[:MAX_LISTED_ERRORS]:
        loc = tuple(err.get("loc", ()))
        path = loc[1:] if located else loc
        field = ".".join(str(p) for p in path if isinstance(p, int | str))
        item = {"location": str(loc[0]) if loc else "body"} if located else {}
        listed.append({**item, "field": field, "type": err.get("type"), "message": err.get("msg")})
    return TaskgateError(ErrorCode.VALIDATION_ERROR, message, {"errors": listed})


def rate_limited(
    message: str, retry_after_seconds: float, reason: str | None = None
) -> TaskgateError:
    """A rate_limited error that says when to retry: in its message, and in
    details.retry_after_seconds, rounded up to the millisecond (a whole number stays an int, so
    an HTTP Retry-After header can carry it). `reason` tells the caller which limit it met."""
    wait = math.ceil(retry_after_seconds * 1000) / 1000
    seconds: float = int(wait) if wait.is_integer() else wait
    details: dict[str, Any] = {"retry_after_seconds": seconds}
    if reason is not None:
        details["reason"] = reason
    return TaskgateError(ErrorCode.RATE_LIMITED, f"{message}; retry after {seconds:g} s", details)
