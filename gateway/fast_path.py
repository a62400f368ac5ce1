"""Cache hits of read tool calls, answered in front of the MCP SDK from bytes encoded once.

The path answers only a request it fully understands, and only where every check the SDK
would make passes: a POST on the MCP path; Content-Type, Host and Origin as the SDK's transport
security checks them; an Accept that takes JSON; a protocol version of either era (none or a
handshake version: the 2025 transport; a 2026-07-28 version: the per-request entry, with its
envelope, routing headers and surface validation run by the SDK's own functions); one JSON-RPC
`tools/call` of a read tool, with nothing in it the path does not handle, and arguments the
tool's own model accepts unchanged; a bearer token the gateway's verifier accepts; and a
result the read cache holds. Then it takes the caller's rate-limit token (once: the SDK never
sees this call) and answers. Anything else, and any doubt, goes to the SDK untouched, with the
body replayed, so every error reply is the SDK's own, and a cache miss is the SDK path's to
load and cache.

The call is observed as gateway.mcp_server.TaskgateMCP.call_tool observes it (the request id
bound from X-Request-ID, its ToolCallObserver's log line, count and latency, its CallLimits),
and counted in taskgate_fast_path_answers_total. The SDK's
OpenTelemetry middleware sees none of these calls (the gateway configures no tracer).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic_core
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.mcpserver.tools import Tool
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
from mcp.types import CallToolResult
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    DEFAULT_NEGOTIATED_VERSION,
    PROTOCOL_VERSION_META_KEY,
    RequestId,
)
from mcp_types import methods as sdk_methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from prometheus_client import Counter
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.encoded_results import Reply, ReplyEncoder, body_of
from gateway.mcp_server import TaskgateMCP, error_result
from gateway.metrics import ToolCallObserver
from gateway.ratelimit import CallLimits
from gateway.request_id import bind_request_id, reset_request_id
from gateway.runtime import RuntimeRef
from gateway.tools.read import CachedReadOf
from shared.errors import TaskgateError
from shared.settings import Settings

log = logging.getLogger(__name__)

_ENVELOPE_KEYS = frozenset({"jsonrpc", "id", "method", "params"})
_LEGACY_PARAMS = frozenset({"name", "arguments"})
_MODERN_PARAMS = frozenset({"name", "arguments", "_meta"})
# The 2026-07-28 envelope's keys; any other _meta (a progress token, a log level) goes to the SDK.
_ENVELOPE_META = frozenset(
    {PROTOCOL_VERSION_META_KEY, CLIENT_INFO_META_KEY, CLIENT_CAPABILITIES_META_KEY}
)
# Ids the path answers: what both eras' writers spell alike with the SDK; others go to it.
_MAX_ID_CHARS = 200
_MAX_INT_ID = 2**63
# Host and Origin values remembered as accepted: a deployment has a handful.
_PERMITTED_MAX = 64
# The memo of encoded replies gets this share of CACHE_MAX_BYTES.
MEMO_SHARE = 4


@dataclass(frozen=True)
class ServedTool:
    tool: Tool
    properties: frozenset[str]
    cached_read: CachedReadOf


@dataclass(frozen=True)
class _Shape:
    """A body that is one tools/call of a served read tool, before the SDK's checks."""

    message: dict[str, Any]
    request_id: RequestId
    name: str
    arguments: dict[str, Any]
    served: ServedTool


@dataclass(frozen=True)
class _Call:
    """A request the path understood, up to its cache look-up."""

    version: str
    request_id: RequestId
    tool: ServedTool
    name: str
    arguments: dict[str, Any]
    validated: dict[str, Any]
    access: AccessToken | None  # None in trusted mode (AUTH_MODE=user_param): no bearer
    user_id: int


class _Permitted:
    """Host or Origin values that the SDK's check accepts, remembered once it has said so.

    A value is put to the SDK's check only when the same patterns admit it: the check logs
    each refusal, and the SDK path, which then answers the request, logs it once already.
    """

    def __init__(self, patterns: Sequence[str], check: Callable[[str], bool]) -> None:
        self._exact = frozenset(patterns)
        self._ports = tuple(p[:-1] for p in patterns if p.endswith(":*"))  # "host:" prefixes
        self._check = check
        self._known: set[str] = set()

    def __call__(self, value: str) -> bool:
        if value in self._known:
            return True
        if not (value in self._exact or value.startswith(self._ports)) or not self._check(value):
            return False
        if len(self._known) < _PERMITTED_MAX:
            self._known.add(value)
        return True


class CachedAnswers:
    """What the path needs of the gateway, and its one decision: answer, or pass through."""

    def __init__(
        self,
        settings: Settings,
        server: TaskgateMCP,
        ref: RuntimeRef,
        verifier: TokenVerifier | None,
        security: TransportSecuritySettings,
        lookups: Mapping[str, CachedReadOf],
    ) -> None:
        self.path = settings.mcp_path
        # AUTH_MODE=user_param: the caller is the `user_id` argument, and the SDK checks no token.
        self.trusted = settings.auth_mode == "user_param"
        self.max_body = settings.max_body_bytes
        self.ref = ref
        self.verifier = verifier
        # The SDK path's own observer and limits (TaskgateMCP.call_tool): counted and limited alike.
        self.observer: ToolCallObserver = server.observer
        self.limits: CallLimits = server.limits
        self.encoder = ReplyEncoder(server._lowlevel_server, settings.cache_max_bytes // MEMO_SHARE)
        self.answers = Counter(
            "taskgate_fast_path_answers",
            "Read tool calls answered from the cache in front of the MCP SDK, by tool.",
            ["tool"],
            registry=self.observer.metrics.registry,
        )
        self.tools = _served_tools(server, lookups)
        self.security = TransportSecurityMiddleware(security)
        self.transport = StreamableHTTPServerTransport(
            mcp_session_id=None, is_json_response_enabled=True, security_settings=security
        )
        self.rebinding = security.enable_dns_rebinding_protection
        self.host_ok = _Permitted(security.allowed_hosts, self.security._validate_host)
        self.origin_ok = _Permitted(security.allowed_origins, self.security._validate_origin)

    # -- the checks, in the order the SDK makes them -------------------------------------

    def version_of(self, headers: Headers) -> str | None:
        """The call's protocol version, or None for one the SDK refuses."""
        version = headers.get(MCP_PROTOCOL_VERSION_HEADER)  # the first, as the SDK reads it
        if version is None:
            return DEFAULT_NEGOTIATED_VERSION
        if version in HANDSHAKE_PROTOCOL_VERSIONS or version in MODERN_PROTOCOL_VERSIONS:
            return version
        return None

    def transport_accepts(self, request: Request, modern: bool) -> bool:
        headers = request.headers
        if not self.security._validate_content_type(headers.get("content-type")):
            return False
        if self.rebinding:
            host, origin = headers.get("host"), headers.get("origin")
            if not host or not self.host_ok(host) or (origin and not self.origin_ok(origin)):
                return False
        if not check_accept_headers(request)[0]:  # JSON responses: JSON must be accepted
            return False
        return modern or self.transport._check_content_type(request)

    async def caller(self, headers: Headers) -> AccessToken | None:
        """The bearer's access token, as the SDK's BearerAuthBackend would accept it."""
        authorization = headers.get("authorization")
        if (
            self.verifier is None
            or not authorization
            or not authorization.lower().startswith("bearer ")
        ):
            return None
        access = await self.verifier.verify_token(authorization[7:])
        if access is None or (access.expires_at and access.expires_at < int(time.time())):
            return None
        return access

    def parse(self, body: bytes, modern: bool) -> Any:
        # Each era's parser, as the SDK's entry for it parses.
        return json.loads(body) if modern else pydantic_core.from_json(body)

    def shape_of(self, message: Any, modern: bool) -> _Shape | None:
        """The body as one tools/call of a served read tool with nothing else in it, or None.
        First and cheap, so that every other request goes to the SDK at little cost."""
        if not (isinstance(message, dict) and message.keys() == _ENVELOPE_KEYS):
            return None
        request_id, params = message["id"], message["params"]
        if message["jsonrpc"] != "2.0" or message["method"] != "tools/call":
            return None
        if not _plain_id(request_id) or not isinstance(params, dict):
            return None
        if not params.keys() <= (_MODERN_PARAMS if modern else _LEGACY_PARAMS):
            return None
        name, arguments = params.get("name"), params.get("arguments", {})
        if not isinstance(name, str) or not isinstance(arguments, dict):
            return None
        served = self.tools.get(name)
        if served is None:
            return None
        return _Shape(message, request_id, name, arguments, served)

    def call_of(
        self, shape: _Shape, request: Request, version: str, access: AccessToken | None
    ) -> _Call | None:
        """The call, when the SDK's own checks of it pass and the tool's model takes its
        arguments unchanged; else None."""
        params = shape.message["params"]
        if version in MODERN_PROTOCOL_VERSIONS and not (
            isinstance(params.get("_meta"), dict)
            and params["_meta"].keys() <= _ENVELOPE_META
            and _modern_envelope_accepted(shape.message, request)
        ):
            return None
        try:
            sdk_methods.validate_client_request("tools/call", version, params)
        except Exception:
            return None
        validated = _validated(shape.served, shape.arguments)
        user_id = None if validated is None else self._user_of(validated, access)
        if validated is None or user_id is None:
            return None
        return _Call(
            version,
            shape.request_id,
            shape.served,
            shape.name,
            shape.arguments,
            validated,
            access,
            user_id,
        )

    def _user_of(self, validated: dict[str, Any], access: AccessToken | None) -> int | None:
        """Whom the tool would read for: gateway.identity.Identity.caller, for a bearer or for
        trusted mode's (validated) user_id argument."""
        if self.trusted:
            user_id = validated.get("user_id")
            return user_id if type(user_id) is int else None
        subject = None if access is None else access.subject
        if subject is None or not (subject.isascii() and subject.isdigit()):
            return None
        return int(subject)

    # -- the answer -----------------------------------------------------------------------

    async def answer(self, call: _Call, headers: Headers) -> tuple[Reply, bytes] | None:
        """The reply and its body, the call observed; or None: the SDK answers it."""
        try:
            reader = self.ref.get().reader
            hit = await call.tool.cached_read(reader, call.user_id, call.validated)
            if hit is None:
                return None
            reply = await self.encoder.cached(
                hit, call.version, call.tool.tool.fn_metadata.convert_result
            )
        except Exception as exc:  # a bad cursor, lost marks, no runtime yet: the SDK's to answer
            log.debug("fast path passes %s on: %s", call.name, type(exc).__name__)
            return None

        async def admitted() -> Reply | CallToolResult:
            try:  # the SDK path's one admit for this call
                await self.limits.admit(call.name, call.arguments)
            except TaskgateError as exc:
                return error_result(exc)  # as TaskgateMCP's failure_result answers it
            reader.cache.count_hit()
            return reply

        user = None if call.access is None else AuthenticatedUser(call.access)
        bound = auth_context_var.set(user)  # whom the rate limit counts, as the SDK's middleware
        try:
            request_id = bind_request_id(headers)  # X-Request-ID, as TaskgateMCP.call_tool binds it
            try:
                answered = await self.observer.observe(call.name, admitted)
            finally:
                reset_request_id(request_id)
        finally:
            auth_context_var.reset(bound)
        if isinstance(answered, CallToolResult):
            answered = await self.encoder.encode(answered, call.version)
        self.answers.labels(call.name).inc()
        return answered, body_of(answered, call.version, call.request_id)


class FastPath:
    """The ASGI middleware: CachedAnswers' request checks, body reading and replay."""

    def __init__(self, app: ASGIApp, answers: CachedAnswers) -> None:
        self.app = app
        self.answers = answers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        a = self.answers
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != a.path
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        headers = request.headers
        version = a.version_of(headers)
        declared = headers.get("content-length")
        # ASCII digits only: str.isdigit() also takes '²' (a Latin-1 header byte), which int()
        # refuses; the SDK ignores a length it cannot read, and answers the request itself.
        if version is None or (
            declared is not None
            and (not (declared.isascii() and declared.isdigit()) or int(declared) > a.max_body)
        ):
            await self.app(scope, receive, send)
            return
        received, body = await _read_body(receive, a.max_body)
        replay = _replaying(received, receive)
        answered = None if body is None else await self._answer(request, version, body)
        if answered is None:
            await self.app(scope, replay, send)
            return
        reply, data = answered
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [*reply.headers, (b"content-length", str(len(data)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": data})

    async def _answer(
        self, request: Request, version: str, body: bytes
    ) -> tuple[Reply, bytes] | None:
        a = self.answers
        modern = version in MODERN_PROTOCOL_VERSIONS
        try:
            shape = a.shape_of(a.parse(body, modern), modern)
        except (ValueError, RecursionError):
            return None
        if shape is None or not a.transport_accepts(request, modern):
            return None
        access = None if a.trusted else await a.caller(request.headers)
        if access is None and not a.trusted:
            return None
        call = a.call_of(shape, request, version, access)
        if call is None:
            return None
        return await a.answer(call, request.headers)


def install_fast_path(
    app: Starlette,
    settings: Settings,
    server: TaskgateMCP,
    ref: RuntimeRef,
    security: TransportSecuritySettings,
    lookups: Mapping[str, CachedReadOf],
) -> bool:
    """Put the fast path in front of the SDK's MCP endpoint, where it can answer as the SDK
    does: stateless, JSON responses, and the authentication it knows (a bearer checked by the
    gateway's verifier, no scopes; or trusted mode's none). Returns whether it did."""
    verifier = server._token_verifier
    auth = server.settings.auth
    if settings.auth_mode == "token":
        known_auth = (
            verifier is not None
            and auth is not None
            and not auth.required_scopes
            and not auth.validate_token_resource
        )
    else:
        known_auth = verifier is None and auth is None
    if not (
        settings.mcp_fast_path
        and settings.mcp_stateless
        and settings.mcp_json_response
        and known_auth
    ):
        return False
    answers = CachedAnswers(settings, server, ref, verifier, security, lookups)
    app.add_middleware(FastPath, answers=answers)
    return True


def _served_tools(
    server: TaskgateMCP, lookups: Mapping[str, CachedReadOf]
) -> dict[str, ServedTool]:
    """The read tools the path answers: every one in the table of read tools
    (gateway.tools.read), but any with Mcp-Param headers to check (x-mcp-header)."""
    served: dict[str, ServedTool] = {}
    for name, lookup in lookups.items():
        tool = server._tool_manager.get_tool(name)
        if tool is None or x_mcp_header_map(tool.parameters):
            continue
        properties = frozenset(tool.parameters.get("properties", {}))
        served[name] = ServedTool(tool, properties, lookup)
    return served


def _plain_id(request_id: Any) -> bool:
    if isinstance(request_id, str):
        return len(request_id) <= _MAX_ID_CHARS
    return type(request_id) is int and -_MAX_INT_ID < request_id < _MAX_INT_ID


def _modern_envelope_accepted(message: dict[str, Any], request: Request) -> bool:
    """The 2026-07-28 entry's checks before dispatch, by the SDK's own functions."""
    headers = request.headers
    if find_duplicated_routing_header(headers.items()) is not None:
        return False
    verdict = classify_inbound_request(message, headers=dict(headers))
    if isinstance(verdict, InboundLadderRejection):
        return False
    # Our read tools declare no Mcp-Param headers; a request that sends some goes to the SDK.
    prefix = MCP_PARAM_HEADER_PREFIX.lower()
    return not any(name.startswith(prefix) for name in headers)


def _validated(served: ServedTool, arguments: dict[str, Any]) -> dict[str, Any] | None:
    """The tool's validated arguments, when its model takes those sent unchanged; else None.

    Unknown names are the gateway's validation_error (server._refuse_unknown_arguments), and a
    value the model coerces ("10" for 10) is the SDK path's to answer."""
    if not arguments.keys() <= served.properties:
        return None
    try:
        validated = served.tool.fn_metadata.validate_arguments(arguments)
    except Exception:
        return None
    for key, value in arguments.items():
        kept = validated.get(key)
        if type(kept) is not type(value) or kept != value:
            return None
    return validated


async def _read_body(receive: Receive, limit: int) -> tuple[list[Message], bytes | None]:
    """The messages read, and the whole body, or None: over `limit`, or the client left."""
    received: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return received, None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return received, None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return received, b"".join(chunks)


def _replaying(received: list[Message], receive: Receive) -> Receive:
    pending = deque(received)

    async def replay() -> Message:
        if pending:
            return pending.popleft()
        return await receive()

    return replay
