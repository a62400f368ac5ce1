"""The connection pool under the gateway's httpx client: aiohttp's connector instead of httpcore.

httpcore's pool probes every idle connection on each request and each response (getpeername and
a poll per socket, through anyio), so at 16 concurrent writes the client alone cost 1.5-2.0 ms
of gateway CPU per forward; on aiohttp's pool, which learns of a closed connection from the
event loop, 0.5-0.8 ms (tests/bench, side by side). httpx stays the client the write path
speaks: auth flows, event hooks, cookies policy, timeouts and the error types are httpx's.

httpx-aiohttp does the same, but maps a refused connection to ConnectTimeout; the write path's
retry rule (gateway.backend_client) must tell "never sent" from "maybe sent", so the mapping
is spelled out here.
"""

from __future__ import annotations

import asyncio

import aiohttp
import httpx
from yarl import URL

# aiohttp adds these when missing; httpx has already set each one it wants sent.
_NO_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


def _httpx_error(exc: Exception) -> httpx.TransportError:
    """aiohttp's failure as the httpx error the same failure raises on httpcore. Subclasses come
    before their bases: a connector error is an OSError, a connect timeout a timeout."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # the pool wait or the TCP connect
        return httpx.ConnectTimeout("connecting to the backend timed out")
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unreachable, DNS: never sent
        return httpx.ConnectError(f"cannot connect to the backend: {exc.os_error.strerror}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError("the backend closed the connection without an answer")
    if isinstance(exc, aiohttp.SocketTimeoutError | asyncio.TimeoutError):
        return httpx.ReadTimeout("the backend's answer timed out")
    if isinstance(exc, aiohttp.ClientResponseError):  # not HTTP the parser can read
        return httpx.RemoteProtocolError(f"the backend's answer is not valid HTTP ({exc.status})")
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientOSError):
        return httpx.ReadError(f"the connection to the backend failed: {type(exc).__name__}")
    return httpx.TransportError(f"calling the backend failed: {type(exc).__name__}")


def _timeout(httpx_timeout: dict[str, float | None]) -> aiohttp.ClientTimeout:
    """httpx's four timeouts. aiohttp has no write timeout: the whole call is bounded by their
    sum instead, so a backend that stops reading cannot hold a call for ever."""
    parts = [httpx_timeout.get(name) for name in ("pool", "connect", "write", "read")]
    return aiohttp.ClientTimeout(
        total=None if None in parts else sum(p for p in parts if p is not None),
        connect=httpx_timeout.get("pool"),
        sock_connect=httpx_timeout.get("connect"),
        sock_read=httpx_timeout.get("read"),
    )


class AiohttpTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive to the backend; the session opens on the first request, in the
    running loop, and closes with the httpx client."""

    def __init__(self, limits: httpx.Limits) -> None:
        self.limits = limits
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        idle = self.limits.keepalive_expiry or 0.0
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 0,  # 0: no bound, as httpx's None
            keepalive_timeout=idle if idle > 0 else None,
            force_close=idle <= 0,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # httpx keeps cookies under its own policy; aiohttp must keep none.
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_NO_AUTO_HEADERS,
            auto_decompress=False,  # httpx decodes Content-Encoding itself
            trust_env=False,
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        body = await request.aread()
        timeout = request.extensions.get("timeout", {})
        try:
            async with session.request(
                request.method,
                URL(str(request.url), encoded=True),  # httpx has already quoted it
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                timeout=_timeout(timeout),
            ) as answer:
                content = await answer.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _httpx_error(exc) from exc
        return httpx.Response(
            answer.status,
            headers=list(answer.raw_headers),
            content=content,
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (answer.reason or "").encode(),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
