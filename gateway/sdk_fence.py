"""Every private or internal MCP SDK name the gateway uses, in one module, checked at start-up.

The fast path (gateway.fast_path) answers as the SDK would by calling the SDK's own code: its
transport's request checks, the per-request (2026-07-28) entry's ladder, the runner's result
shaping, and each era's reply writer. Some of those are private, and an SDK release may rename
or change any of them. So they are reached from here only; pyproject.toml pins the mcp minor
version they were checked against; and self_test() encodes one reply for each protocol era and
compares it with the reply the SDK's own HTTP app sends for the same call. The composition
root keeps the fast path off unless it passes. The server internals that TaskgateMCP reads
answer None when absent, so that the SDK path still serves every call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pydantic_core
from mcp.server._streamable_http_modern import _write as write_modern_reply
from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.connection import Connection
from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.server.runner import ServerRunner
from mcp.server.streamable_http import StreamableHTTPServerTransport, check_accept_headers
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.inbound import (
    MCP_PARAM_HEADER_PREFIX,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
    x_mcp_header_map,
)
from mcp.types import CallToolResult, TextContent
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    DEFAULT_NEGOTIATED_VERSION,
    PROTOCOL_VERSION_META_KEY,
    JSONRPCResponse,
    RequestId,
)
from mcp_types import methods as sdk_methods
from mcp_types.version import (
    HANDSHAKE_PROTOCOL_VERSIONS,
    LATEST_MODERN_VERSION,
    MODERN_PROTOCOL_VERSIONS,
)
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection, Request
from starlette.types import Message

__all__ = [
    "CLIENT_CAPABILITIES_META_KEY",
    "CLIENT_INFO_META_KEY",
    "MCP_PROTOCOL_VERSION_HEADER",
    "PROTOCOL_VERSION_META_KEY",
    "Reply",
    "ReplyWriter",
    "TransportChecks",
    "bearer_access",
    "body_of",
    "declares_param_headers",
    "modern_envelope_accepted",
    "registered_prompt_exists",
    "registered_tool",
    "self_test",
    "surface_valid",
    "token_verifier",
]

_SENTINEL_ID = "taskgate-fast-path-request-id"
# What ReplyWriter.encode_once puts in a result's place, to find where the result's values go.
_SENTINEL_TEXT = "taskgate-fast-path-text"
_SENTINEL_STRUCTURED = {"taskgate-fast-path-structured": 1}
# Distinct header lists kept for replies to share: one per era and status, in practice.
_SHARED_HEADER_SETS = 16


# -- the MCPServer's internals ---------------------------------------------------------------


def registered_tool(server: MCPServer, name: str) -> Tool | None:
    manager = getattr(server, "_tool_manager", None)
    return None if manager is None else manager.get_tool(name)


def registered_prompt_exists(server: MCPServer, name: str) -> bool | None:
    """Whether the server has the prompt; None when the SDK does not say."""
    manager = getattr(server, "_prompt_manager", None)
    return None if manager is None else manager.get_prompt(name) is not None


def token_verifier(server: MCPServer) -> TokenVerifier | None:
    verifier: TokenVerifier | None = getattr(server, "_token_verifier", None)
    return verifier


def lowlevel_server(server: MCPServer) -> Server[Any]:
    lowlevel: Server[Any] = server._lowlevel_server
    return lowlevel


def declares_param_headers(tool: Tool) -> bool:
    """Whether the tool's input schema declares Mcp-Param headers (x-mcp-header)."""
    return bool(x_mcp_header_map(tool.parameters))


# -- the transport's request checks ----------------------------------------------------------


async def bearer_access(verifier: TokenVerifier, request: HTTPConnection) -> AccessToken | None:
    """The bearer's access token, by the SDK's own BearerAuthBackend (scheme, verify, expiry)."""
    authenticated = await BearerAuthBackend(verifier).authenticate(request)
    return None if authenticated is None else authenticated[1].access_token


class TransportChecks:
    """The streamable HTTP transport's checks of a POST, as its security middleware and its
    handshake-era transport make them."""

    def __init__(self, security: TransportSecuritySettings) -> None:
        self._security = TransportSecurityMiddleware(security)
        self._transport = StreamableHTTPServerTransport(
            mcp_session_id=None, is_json_response_enabled=True, security_settings=security
        )
        self.host_ok: Callable[[str], bool] = self._security._validate_host
        self.origin_ok: Callable[[str], bool] = self._security._validate_origin

    def content_type_ok(self, value: str | None) -> bool:
        return bool(self._security._validate_content_type(value))

    def handshake_content_type_ok(self, request: Request) -> bool:
        return bool(self._transport._check_content_type(request))

    @staticmethod
    def accepts_json(request: Request) -> bool:
        return bool(check_accept_headers(request)[0])


def surface_valid(version: str, params: Any) -> bool:
    """The SDK's surface validation of tools/call params at `version`."""
    try:
        sdk_methods.validate_client_request("tools/call", version, params)
    except Exception:
        return False
    return True


def modern_envelope_accepted(message: dict[str, Any], headers: Headers) -> bool:
    """The 2026-07-28 entry's checks before dispatch, by the SDK's own functions; a request
    that sends Mcp-Param headers is refused here (the path serves tools that declare none)."""
    if find_duplicated_routing_header(headers.items()) is not None:
        return False
    verdict = classify_inbound_request(message, headers=dict(headers))
    if isinstance(verdict, InboundLadderRejection):
        return False
    prefix = MCP_PARAM_HEADER_PREFIX.lower()
    return not any(name.startswith(prefix) for name in headers)


# -- the replies ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """One encoded reply, cut at its id: head + id + tail is the body."""

    status: int
    # Without content-length, which depends on the id. A tuple that replies share: a list per
    # reply was ~230 bytes that no charge counted.
    headers: tuple[tuple[bytes, bytes], ...]
    head: bytes
    tail: bytes


def encode_id(version: str, request_id: RequestId) -> bytes:
    """The id as each era's writer spells it: pydantic's JSON for the handshake-era transport,
    the standard library's (ASCII) for the 2026-07-28 entry."""
    if version in MODERN_PROTOCOL_VERSIONS:
        return json.dumps(request_id).encode()
    return pydantic_core.to_json(request_id)


def body_of(reply: Reply, version: str, request_id: RequestId) -> bytes:
    return reply.head + encode_id(version, request_id) + reply.tail


class ReplyWriter:
    """tools/call results encoded as the SDK sends them: the runner's wire shaping (cache hints,
    the per-version sieve, the 2026 `serverInfo` stamp), then the writer of the request's era
    (the handshake-era transport's JSON response, or the 2026-07-28 entry's `_write`)."""

    def __init__(self, server: Server[Any]) -> None:
        # The runner is only asked to shape results (_serialize reads server settings alone).
        self._runner = ServerRunner(
            server, Connection.from_envelope(LATEST_MODERN_VERSION, None, None), None
        )
        self._legacy = StreamableHTTPServerTransport(
            mcp_session_id=None, is_json_response_enabled=True
        )
        self._header_sets: dict[tuple[tuple[bytes, bytes], ...], tuple[tuple[bytes, bytes], ...]]
        self._header_sets = {}

    async def encode(self, result: CallToolResult, version: str) -> Reply:
        """Encode with a sentinel id and cut around it, so a call splices its own id in."""
        shaped = dict(self._runner._serialize("tools/call", version, result))
        message = JSONRPCResponse(jsonrpc="2.0", id=_SENTINEL_ID, result=shaped)
        status, headers, body = await self._write(message, version)
        # The envelope's fields come in order (jsonrpc, id, result): the first sentinel is the id.
        sentinel = encode_id(version, _SENTINEL_ID)
        at = body.find(sentinel)
        if at < 0 or not body[:at].endswith(b'"id":'):
            raise ValueError("the SDK's reply does not carry the id where expected")
        kept = tuple((name, value) for name, value in headers if name != b"content-length")
        shared = self._header_sets.get(kept)
        if shared is None and len(self._header_sets) < _SHARED_HEADER_SETS:
            shared = self._header_sets[kept] = kept
        return Reply(status, shared or kept, body[:at], body[at + len(sentinel) :])

    async def encode_once(self, result: CallToolResult, version: str) -> Reply:
        """As encode, for a result sent once (a cache miss): the SDK's writer encodes the reply
        around placeholders, and the result's structured content and text, which make up most
        of it, are encoded once each by the era's JSON encoder (json.dumps for the 2026-07-28
        entry, pydantic's for the handshake era, as its writer encodes them) and spliced in.
        The shaping and writer would otherwise copy the page twice more, and walk it in
        Python. Anything else (no structured content, not one text block, a placeholder the
        shaping dropped) is encoded whole. self_test() checks the splice against encode."""
        blocks = result.content
        text = blocks[0].text if len(blocks) == 1 and isinstance(blocks[0], TextContent) else None
        if result.structured_content is None or text is None:
            return await self.encode(result, version)
        stand_in = result.model_copy(
            update={
                "structured_content": _SENTINEL_STRUCTURED,
                "content": [TextContent(type="text", text=_SENTINEL_TEXT)],
            }
        )
        reply = await self.encode(stand_in, version)
        value = _value_encoder(version)
        cuts = {value(_SENTINEL_STRUCTURED): result.structured_content, value(_SENTINEL_TEXT): text}
        found = {reply.tail.find(cut): cut for cut in cuts}
        if -1 in found or any(reply.tail.count(cut) != 1 for cut in cuts):
            return await self.encode(result, version)
        parts, at = [], 0
        for start in sorted(found):
            cut = found[start]
            parts += [reply.tail[at:start], value(cuts[cut])]
            at = start + len(cut)
        parts.append(reply.tail[at:])
        return Reply(reply.status, reply.headers, reply.head, b"".join(parts))

    async def _write(
        self, message: JSONRPCResponse, version: str
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        sent: list[Message] = []

        async def capture(event: Message) -> None:
            sent.append(event)

        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        scope: dict[str, Any] = {"type": "http"}
        if version in MODERN_PROTOCOL_VERSIONS:
            await write_modern_reply(message, scope, no_body, capture)
        else:
            response = self._legacy._create_json_response(message)
            await response(scope, no_body, capture)
        return _captured(sent)


def _value_encoder(version: str) -> Callable[[Any], bytes]:
    """How each era's writer spells a value inside a reply (see encode_id)."""
    if version in MODERN_PROTOCOL_VERSIONS:
        return lambda value: json.dumps(value, separators=(",", ":")).encode()
    return pydantic_core.to_json


def _captured(sent: list[Message]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return int(start["status"]), list(start["headers"]), body


# -- the start-up self-test -------------------------------------------------------------------

_PROBE_TOOL = "taskgate_fence_probe"
_PROBE_PATH = "/mcp"
_PROBE_IDS: tuple[RequestId, ...] = (7, 'probe "ü" ✓')


def _probe_result() -> CallToolResult:
    # Non-ASCII text and structured content: the eras' writers spell both differently.
    value = {"probe": "ü ✓ \u2028", "n": 1}
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(value))], structured_content=value
    )


def _probe_request(version: str | None, request_id: RequestId) -> tuple[list[Any], bytes]:
    params: dict[str, Any] = {"name": _PROBE_TOOL, "arguments": {}}
    headers = [
        (b"content-type", b"application/json"),
        (b"accept", b"application/json, text/event-stream"),
    ]
    if version is not None:
        headers.append((MCP_PROTOCOL_VERSION_HEADER.lower().encode(), version.encode()))
    if version in MODERN_PROTOCOL_VERSIONS:
        params["_meta"] = {
            PROTOCOL_VERSION_META_KEY: version,
            CLIENT_INFO_META_KEY: {"name": "taskgate-fence", "version": "1"},
            CLIENT_CAPABILITIES_META_KEY: {},
        }
        headers += [(b"mcp-method", b"tools/call"), (b"mcp-name", _PROBE_TOOL.encode())]
    message = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    return headers, json.dumps(message).encode()


async def _sdk_reply(
    app: Any, headers: list[Any], body: bytes
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    sent: list[Message] = []
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        return pending.pop() if pending else {"type": "http.disconnect"}

    async def capture(event: Message) -> None:
        sent.append(event)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": _PROBE_PATH,
        "raw_path": _PROBE_PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, capture)
    return _captured(sent)


def _comparable(
    status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    # Header order is the server's to choose; the fast path appends content-length last.
    return status, sorted((name.lower(), value) for name, value in headers), body


async def self_test() -> str | None:
    """None when this module's replies equal the SDK's own, byte for byte, for a call at each
    protocol era (no version header, the latest handshake version, each modern version);
    else what differed. Raises nothing: a renamed private name is a difference too."""
    try:
        return await _compare_eras()
    except Exception as exc:
        while isinstance(exc, ExceptionGroup) and exc.exceptions:  # the probe app's task group
            exc = exc.exceptions[0]
        return f"the self-test failed: {type(exc).__name__}: {exc}"


async def _compare_eras() -> str | None:
    probe = MCPServer(name="taskgate-fence-probe")
    result = _probe_result()

    async def taskgate_fence_probe() -> CallToolResult:
        """Answers one fixed result."""
        return result

    probe.add_tool(taskgate_fence_probe, name=_PROBE_TOOL)
    app = probe.streamable_http_app(
        streamable_http_path=_PROBE_PATH,
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    writer = ReplyWriter(lowlevel_server(probe))
    versions: list[str | None] = [None, max(HANDSHAKE_PROTOCOL_VERSIONS)]
    versions += list(MODERN_PROTOCOL_VERSIONS)
    async with app.router.lifespan_context(app):
        for version in versions:
            negotiated = version or DEFAULT_NEGOTIATED_VERSION
            reply = await writer.encode(result, negotiated)
            once = await writer.encode_once(result, negotiated)
            if once != reply:
                return (
                    f"at protocol version {version or 'none'}, a result spliced into its reply "
                    f"({once.tail[:200]!r}) is not the writer's own ({reply.tail[:200]!r})"
                )
            for request_id in _PROBE_IDS:
                headers, body = _probe_request(version, request_id)
                sdk = _comparable(*await _sdk_reply(app, headers, body))
                data = body_of(reply, negotiated, request_id)
                ours = _comparable(
                    reply.status, [*reply.headers, (b"content-length", b"%d" % len(data))], data
                )
                if ours != sdk:
                    return (
                        f"at protocol version {version or 'none'}, the SDK answered "
                        f"{sdk[0]} {sdk[2][:200]!r}, the fast path would answer "
                        f"{ours[0]} {ours[2][:200]!r}"
                    )
    return None
