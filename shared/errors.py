"""The one error envelope that every taskgate edge answers with."""

from __future__ import annotations

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

    def envelope(self) -> ErrorEnvelope:
        return ErrorEnvelope(error_code=self.code, message=self.message, details=self.details)

    @classmethod
    def from_envelope(cls, envelope: ErrorEnvelope) -> TaskgateError:
        return cls(envelope.error_code, envelope.message, envelope.details)
