"""ASGI middleware for the backend: a request body size limit, and a last-resort 500."""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.asgi_body import content_length, read_body, replaying, send_json
from shared.errors import ErrorCode, ErrorEnvelope

log = logging.getLogger(__name__)
_PROJECT = str(Path(__file__).resolve().parent.parent)


def _where(exc: BaseException) -> str:
    """The deepest frame in taskgate's own code (else the deepest), as file:line."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if f.filename.startswith(_PROJECT) and "-packages" not in f.filename]
    if not (own or frames):
        return "?"
    frame = (own or frames)[-1]
    return f"{frame.filename}:{frame.lineno} in {frame.name}"


def _envelope_bytes(code: ErrorCode, message: str, details: dict[str, str] | None = None) -> bytes:
    envelope = ErrorEnvelope(error_code=code, message=message, details=details or {})
    return json.dumps(envelope.model_dump(mode="json")).encode()


class BodySizeLimit:
    """Refuses bodies over max_bytes with 413, by Content-Length or while streaming.

    The body is read in full before the app runs (it is small by definition), because the app's
    body parser would turn an error raised mid-stream into a generic 400.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, smaller: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self._smaller = smaller or {}  # tighter bounds for some paths

    def _too_large(self, max_bytes: int) -> bytes:
        return _envelope_bytes(
            ErrorCode.BAD_REQUEST, "request body is too large", {"max_bytes": str(max_bytes)}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self._smaller.get(scope["path"], self.max_bytes)
        for name, value in scope.get("headers", []):
            declared = content_length(value) if name == b"content-length" else None
            if declared is not None and declared > max_bytes:
                await send_json(send, 413, self._too_large(max_bytes))
                return
        read = await read_body(receive, max_bytes)
        if read.too_large:
            await send_json(send, 413, self._too_large(max_bytes))
            return
        if read.body is None:
            return  # the client went away before sending its body
        await self.app(scope, replaying(read.received, receive), send)


class UnhandledErrors:
    """Answers 500 with the envelope for any exception no handler mapped.

    Sits inside Starlette's ServerErrorMiddleware, which would log the full traceback (with
    statement parameters in database errors) and re-raise to the server. Here the log gets the
    exception's class and where it was raised, plus an id that the client also receives.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            error_id = uuid.uuid4().hex
            where = _where(exc)
            log.error(
                "unhandled %s at %s on %s %s (error id %s)",
                type(exc).__name__,
                where,
                scope.get("method"),
                scope.get("path"),
                error_id,
            )
            if started:
                return  # too late for an envelope; the server closes the connection
            body = _envelope_bytes(
                ErrorCode.SERVER_ERROR, "internal server error", {"error_id": error_id}
            )
            await send_json(send, 500, body)
