"""The request id of a tool call: bound once as the call enters, sent to the backend as
X-Request-ID by one hook on the pooled client.

The variable itself is shared.logs.request_id_var, so log lines carry the same id; read it with
shared.logs.current_request_id.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import Token

import httpx

from shared.api import REQUEST_ID_HEADER
from shared.logs import current_request_id, request_id_from, request_id_var

_HEADER = REQUEST_ID_HEADER.lower()


def bind_request_id(headers: Mapping[str, str] | None) -> Token[str | None]:
    """Start a tool call: keep the id already in scope, else the caller's X-Request-ID when it is
    a plain token, else a new one."""
    bound = request_id_var.get()
    if bound is None:
        bound = request_id_from(headers.get(_HEADER) if headers is not None else None)
    return request_id_var.set(bound)


def reset_request_id(token: Token[str | None]) -> None:
    request_id_var.reset(token)


async def send_request_id(request: httpx.Request) -> None:
    """httpx request hook: every backend request of a call carries its id, the token exchange
    and the stdio login that an auth flow sends on its behalf included. Outside a call (the
    start-up login) none is sent and the backend makes one."""
    request_id = current_request_id()
    if request_id is not None:
        request.headers[REQUEST_ID_HEADER] = request_id
