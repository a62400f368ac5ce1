"""One log line per backend request, under the caller's X-Request-ID (the gateway sends its
tool call's id), which is also echoed on the response."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.api import REQUEST_ID_HEADER
from shared.logs import request_id_from, request_scope

log = logging.getLogger("backend.requests")
_HEADER = REQUEST_ID_HEADER.lower().encode()


class RequestLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = dict(scope.get("headers", [])).get(_HEADER, b"").decode("latin-1")
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (_HEADER, request_id.encode())]
            await send(message)

        with request_scope(request_id_from(supplied)) as request_id:
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed_ms = (time.perf_counter() - started) * 1000
                # The path only: query strings may carry data that does not belong in logs.
                log.info(
                    "%s %s -> %d in %.1f ms",
                    scope["method"],
                    scope["path"],
                    status,
                    elapsed_ms,
                    extra={
                        "request_id": request_id,
                        "status": status,
                        "duration_ms": round(elapsed_ms, 1),
                    },
                )
