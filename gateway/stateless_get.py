"""`GET /mcp` on a stateless gateway: 405, as the streamable HTTP transport allows.

A stateless gateway has no session to push messages on, yet the SDK answers such a GET with a
standalone event stream that stays open until the client leaves: each one a task and a socket
held for nothing, and nothing bounded how many one user opened. The transport's spec lets a
server that offers no such stream answer 405, and MCP clients then carry on over POST alone.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from shared.asgi_body import send_json
from shared.errors import ErrorCode, ErrorEnvelope

_BODY = json.dumps(
    ErrorEnvelope(
        error_code=ErrorCode.BAD_REQUEST,
        message="this gateway is stateless and offers no event stream; send requests with POST",
        details={"allowed_methods": ["POST"]},
    ).model_dump(mode="json")
).encode()


class RefuseStandaloneStream:
    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self._paths = {path, path.rstrip("/") + "/"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] not in self._paths:
            await self.app(scope, receive, send)
            return
        await send_json(send, 405, _BODY, ((b"allow", b"POST"),))
