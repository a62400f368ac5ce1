"""OAuth errors that also read as the shared envelope.

OAuth clients parse `{error, error_description}` (RFC 6749 5.2, RFC 7591 3.2.2), so the OAuth
endpoints keep that body; this middleware adds the envelope's keys beside it, so the same body
is both, and an OAuth failure is never a bare shape the rest of taskgate does not speak.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.api import OAUTH_AUTHORIZE_PATH, OAUTH_REGISTER_PATH, OAUTH_TOKEN_PATH
from shared.errors import ErrorCode

OAUTH_PATHS = frozenset({OAUTH_AUTHORIZE_PATH, OAUTH_TOKEN_PATH, OAUTH_REGISTER_PATH})
_CODES = {
    "invalid_client": ErrorCode.UNAUTHORIZED,
    "unauthorized_client": ErrorCode.FORBIDDEN,
    "access_denied": ErrorCode.FORBIDDEN,
    "invalid_client_metadata": ErrorCode.VALIDATION_ERROR,
    "invalid_redirect_uri": ErrorCode.VALIDATION_ERROR,
    "server_error": ErrorCode.SERVER_ERROR,
    "temporarily_unavailable": ErrorCode.BACKEND_UNAVAILABLE,
}
_MAX_ERROR_BODY = 64 * 1024  # OAuth error bodies are small; anything larger passes unchanged


def with_envelope(body: dict[str, Any]) -> dict[str, Any]:
    error = str(body["error"])
    return {
        **body,
        "status": "error",
        "error_code": _CODES.get(error, ErrorCode.BAD_REQUEST).value,
        "message": str(body.get("error_description") or error),
        "details": {"oauth_error": error},
    }


class OAuthErrorEnvelope:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in OAUTH_PATHS:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def rewriting_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if 400 <= message["status"] < 500 and _is_json(message):
                    start = message  # held until the body is complete
                    return
                await send(message)
            elif message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await _send_rewritten(send, start, b"".join(chunks))
            else:
                await send(message)

        await self.app(scope, receive, rewriting_send)


def _is_json(start: Message) -> bool:
    return any(
        name == b"content-type" and value.startswith(b"application/json")
        for name, value in start.get("headers", [])
    )


async def _send_rewritten(send: Send, start: Message, body: bytes) -> None:
    try:
        parsed = json.loads(body) if len(body) <= _MAX_ERROR_BODY else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "error" in parsed and "error_code" not in parsed:
        body = json.dumps(with_envelope(parsed)).encode()
    headers = [(n, v) for n, v in start.get("headers", []) if n != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body})
