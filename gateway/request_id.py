"""The request id of the current tool call, sent to the backend as X-Request-ID.

The variable itself is shared.logs.request_id_var, so log lines carry the same id.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from contextvars import Token

from shared.logs import REQUEST_ID_HEADER, request_id_from, request_id_var

HEADER = REQUEST_ID_HEADER


def bind_request_id(headers: Mapping[str, str] | None) -> Token[str | None]:
    """Start a tool call: keep the id already in scope, else the caller's X-Request-ID when it is
    a plain token, else a new one."""
    bound = request_id_var.get()
    if bound is None:
        supplied = headers.get(HEADER.lower()) if headers is not None else None
        bound = request_id_from(supplied)
    return request_id_var.set(bound)


def reset_request_id(token: Token[str | None]) -> None:
    request_id_var.reset(token)


def current_request_id() -> str:
    """The bound id, or a fresh one outside a tool call (start-up login, unit tests)."""
    return request_id_var.get() or uuid.uuid4().hex
