"""Header values without their surrounding whitespace, before the MCP SDK reads them.

RFC 9110 section 5.5: a field value excludes leading and trailing optional whitespace. uvicorn's
httptools parser keeps it, and the SDK compares `Mcp-Name` with the body's name byte for byte,
so a conforming client that pads the value would get -32020 (the conformance suite checks it).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

_OWS = b" \t"


class StripHeaderWhitespace:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers: list[tuple[bytes, bytes]] = scope["headers"]
            # Most requests have nothing to strip: copy the scope only when one value needs it.
            if any(v[:1] in (b" ", b"\t") or v[-1:] in (b" ", b"\t") for _, v in headers):
                scope = {**scope, "headers": [(k, v.strip(_OWS)) for k, v in headers]}
        await self.app(scope, receive, send)
