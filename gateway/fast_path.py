"""Tool calls answered in front of the MCP SDK: a read's hit from bytes encoded once, a read's
miss loaded by the tool itself, and a write forwarded by its tool, each encoded by the SDK's own
writer.

The path answers only a request it fully understands, and only where every check the SDK
would make passes: a POST on the MCP path; Content-Type, Host and Origin as the SDK's transport
security checks them; an Accept that takes JSON; a protocol version of either era (none or a
handshake version: the 2025 transport; a 2026-07-28 version: the per-request entry, with its
envelope, routing headers and surface validation run by the SDK's own functions); one JSON-RPC
`tools/call` of a read or write tool, with nothing in it the path does not handle, and arguments
the tool's own model accepts unchanged; and a bearer token the gateway's verifier accepts. Then
the call gate admits it (once: the SDK never sees this call) and it answers: a read from the
read cache, or, on a miss or a write, by running the registered tool as the SDK would
(TaskgateMCP.run_tool: the same validation, read or forward, and result conversion) and
encoding its result as the SDK's writer does. That skips the SDK's request parsing, dispatch
and reply writing, which cost more than a read and a fifth of a forward. Anything else, and any
doubt, goes to the SDK untouched, with the body replayed, so every error reply the path does not
make through the gate is the SDK's own. Once a write's tool has run, the request is the path's
to answer whatever happens: replaying it would send the write again.

The call passes the same gate as the SDK path's (gateway.call_gate: request id, caller, limits,
failure envelope, metrics), and is counted in taskgate_fast_path_answers_total, by tool and by
cache: hit, miss, or write. The SDK's OpenTelemetry middleware sees none of these calls (the
gateway configures no tracer).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pydantic_core
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.mcpserver.tools import Tool
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult
from mcp_types import DEFAULT_NEGOTIATED_VERSION, RequestId
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from prometheus_client import Counter
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import sdk_fence
from gateway.call_gate import error_result
from gateway.encoded_results import ReplyEncoder
from gateway.identity import resolve_principal
from gateway.mcp_server import TaskgateMCP
from gateway.runtime import RuntimeRef
from gateway.sdk_fence import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    MCP_PROTOCOL_VERSION_HEADER,
    PROTOCOL_VERSION_META_KEY,
    Reply,
    TransportChecks,
    body_of,
)
from gateway.tools.read import CachedReadOf
from shared.asgi_body import content_length, read_body, replaying
from shared.errors import ErrorCode, TaskgateError
from shared.settings import Settings
from shared.user_ids import UserId

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
    cached_read: CachedReadOf | None  # None: a write tool, never answered from the cache


@dataclass(frozen=True)
class _Shape:
    """A body that is one tools/call of a served tool, before the SDK's checks."""

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
    user_id: UserId


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


class ToolResponder:
    """What the path needs of the gateway, and its one decision: answer, or pass through."""

    def __init__(
        self,
        settings: Settings,
        server: TaskgateMCP,
        ref: RuntimeRef,
        verifier: TokenVerifier | None,
        security: TransportSecuritySettings,
        lookups: Mapping[str, CachedReadOf],
        writes: Collection[str],
    ) -> None:
        self.path = settings.mcp_path
        self.server = server
        self.gate = server.gate  # the SDK path's gate: counted and limited alike
        # Off until start() has run the SDK fence's self-test.
        self.enabled = False
        self.enabled_gauge = self.gate.observer.metrics.fast_path_enabled
        self._faulted = False
        # AUTH_MODE=user_param: the caller is the `user_id` argument, and the SDK checks no token.
        self.trusted = self.gate.trusted
        self.user_ids = self.gate.user_ids
        self.max_body = settings.max_body_bytes
        self.ref = ref
        self.verifier = verifier
        self.encoder = ReplyEncoder.of(server, settings.cache_max_bytes // MEMO_SHARE)
        self.answers = Counter(
            "taskgate_fast_path_answers",
            "Tool calls answered in front of the MCP SDK, by tool and cache: hit, miss or write.",
            ["tool", "cache"],
            registry=self.gate.observer.metrics.registry,
        )
        self.tools = _served_tools(server, lookups, writes)
        self.checks = TransportChecks(security)
        self.rebinding = security.enable_dns_rebinding_protection
        self.host_ok = _Permitted(security.allowed_hosts, self.checks.host_ok)
        self.origin_ok = _Permitted(security.allowed_origins, self.checks.origin_ok)

    async def start(self) -> None:
        """Turn the path on if the SDK fence's self-test passes; else log one ERROR."""
        problem = await sdk_fence.self_test()
        if problem is not None:
            log.error(
                "the fast path stays off: its replies are not the MCP SDK's (%s); every call "
                "goes to the SDK. Check gateway/sdk_fence.py against this mcp version.",
                problem,
            )
        self.enabled = problem is None
        self.enabled_gauge.set(1 if self.enabled else 0)

    def fault(self, exc: Exception) -> None:
        """A fault in the path's own code: the request goes to the SDK, logged once in full."""
        if not self._faulted:
            self._faulted = True
            log.error("the fast path passed a request on after a fault", exc_info=exc)
        else:
            log.debug("the fast path passed a request on after %s", type(exc).__name__)

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
        if not self.checks.content_type_ok(headers.get("content-type")):
            return False
        if self.rebinding:
            host, origin = headers.get("host"), headers.get("origin")
            if not host or not self.host_ok(host) or (origin and not self.origin_ok(origin)):
                return False
        if not self.checks.accepts_json(request):  # JSON responses: JSON must be accepted
            return False
        return modern or self.checks.handshake_content_type_ok(request)

    async def caller(self, request: Request) -> AccessToken | None:
        """The bearer's access token, as the SDK's authentication would accept it."""
        if self.verifier is None:
            return None
        return await sdk_fence.bearer_access(self.verifier, request)

    def parse(self, body: bytes, modern: bool) -> Any:
        # Each era's parser, as the SDK's entry for it parses.
        return json.loads(body) if modern else pydantic_core.from_json(body)

    def shape_of(self, message: Any, modern: bool) -> _Shape | None:
        """The body as one tools/call of a served tool with nothing else in it, or None.
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
            and sdk_fence.modern_envelope_accepted(shape.message, request.headers)
        ):
            return None
        if not sdk_fence.surface_valid(version, params):
            return None
        validated = _validated(shape.served, shape.arguments)
        if validated is None:
            return None
        try:
            principal = resolve_principal(self.trusted, access, shape.arguments, self.user_ids)
        except TaskgateError:
            return None  # the SDK path's to refuse
        user_id = principal.user_id
        if user_id is None:
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

    # -- the answer -----------------------------------------------------------------------

    async def answer(self, call: _Call, headers: Headers) -> tuple[Reply, bytes] | None:
        """The reply and its body, the call observed; or None: the SDK answers it."""
        cached_read = call.tool.cached_read
        if cached_read is None:
            return await self._written(call, headers)
        try:
            reader = self.ref.get().reader
            hit = await cached_read(reader, call.user_id, call.validated)
            reply = None
            if hit is not None:
                convert = call.tool.tool.fn_metadata.convert_result
                reply = await self.encoder.cached(hit, call.version, convert)
        except Exception as exc:  # a bad cursor, lost marks, no runtime yet: the SDK's to answer
            log.debug("fast path passes %s on: %s", call.name, type(exc).__name__)
            return None

        async def served() -> Reply | CallToolResult:
            if reply is None:  # a miss: the tool reads (and fills the cache) as on the SDK path
                return await self.server.run_tool(call.name, call.arguments)
            reader.cache.count_hit()
            return reply

        answered = await self.gate.call(
            call.name, call.name, headers, call.access, call.arguments, served
        )
        if isinstance(answered, CallToolResult):  # a miss's page, or a refusal
            answered = await self.encoder.encode_once(answered, call.version)
        self.answers.labels(call.name, "miss" if reply is None else "hit").inc()
        return answered, body_of(answered, call.version, call.request_id)

    async def _written(self, call: _Call, headers: Headers) -> tuple[Reply, bytes]:
        """A write, forwarded by its tool. From here on the request is answered, never passed
        on: the tool may have sent the write, and the SDK would send it again."""

        async def run() -> CallToolResult:
            return await self.server.run_tool(call.name, call.arguments)

        try:
            result = await self.gate.call(
                call.name, call.name, headers, call.access, call.arguments, run
            )
            self.answers.labels(call.name, "write").inc()
            # A write's answer is one small object: the writer's plain encoding costs about half
            # of encode_once's (which pays off for a page's many values).
            reply = await self.encoder.encode(result, call.version)
        except Exception as exc:  # the gate's envelope and the SDK's writer failed
            log.error("the fast path could not answer %s", call.name, exc_info=exc)
            failed = error_result(TaskgateError(ErrorCode.SERVER_ERROR, "the tool failed"))
            reply = await self.encoder.encode_once(failed, call.version)  # the other way
        return reply, body_of(reply, call.version, call.request_id)


class FastPath:
    """The ASGI middleware: the responder's request checks, body reading and replay."""

    def __init__(self, app: ASGIApp, responder: ToolResponder) -> None:
        self.app = app
        self.responder = responder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        a = self.responder
        if (
            not a.enabled
            or scope["type"] != "http"
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
        length = content_length(declared)
        # A length the SDK cannot read, it ignores, and answers the request itself.
        if version is None or (declared is not None and (length is None or length > a.max_body)):
            await self.app(scope, receive, send)
            return
        read = await read_body(receive, a.max_body)
        replay = replaying(read.received, receive)
        body = read.body
        answered = None if body is None else await self._answered(request, version, body)
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

    async def _answered(
        self, request: Request, version: str, body: bytes
    ) -> tuple[Reply, bytes] | None:
        """The reply, or None: the SDK's to answer, a fault of the path's own code too."""
        try:
            return await self._answer(request, version, body)
        except Exception as exc:
            self.responder.fault(exc)
            return None

    async def _answer(
        self, request: Request, version: str, body: bytes
    ) -> tuple[Reply, bytes] | None:
        a = self.responder
        modern = version in MODERN_PROTOCOL_VERSIONS
        try:
            shape = a.shape_of(a.parse(body, modern), modern)
        except (ValueError, RecursionError):
            return None
        if shape is None or not a.transport_accepts(request, modern):
            return None
        access = None if a.trusted else await a.caller(request)
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
    writes: Collection[str],
) -> bool:
    """Put the fast path in front of the SDK's MCP endpoint, where it can answer as the SDK
    does: stateless, JSON responses, and the authentication it knows (a bearer checked by the
    gateway's verifier, no scopes; or trusted mode's none). It answers once the app's lifespan
    has run the SDK fence's self-test and that passed. Returns whether it was put there."""
    verifier = sdk_fence.token_verifier(server)
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
    enabled = server.gate.observer.metrics.fast_path_enabled
    try:
        responder = ToolResponder(settings, server, ref, verifier, security, lookups, writes)
    except Exception as exc:  # an SDK whose internals the fence no longer finds
        log.error("the fast path stays off: %s: %s", type(exc).__name__, exc)
        enabled.set(0)
        return False
    app.add_middleware(FastPath, responder=responder)
    serve = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[Any]:
        async with serve(app) as state:
            await responder.start()
            yield state

    app.router.lifespan_context = lifespan
    return True


def _served_tools(
    server: TaskgateMCP, lookups: Mapping[str, CachedReadOf], writes: Collection[str]
) -> dict[str, ServedTool]:
    """The tools the path answers: every one in the table of read tools (gateway.tools.read)
    and every write tool, but any with Mcp-Param headers to check (x-mcp-header)."""
    chosen: dict[str, CachedReadOf | None] = {**dict.fromkeys(writes), **lookups}
    served: dict[str, ServedTool] = {}
    for name, lookup in chosen.items():
        tool = sdk_fence.registered_tool(server, name)
        if tool is None or sdk_fence.declares_param_headers(tool):
            continue
        properties = frozenset(tool.parameters.get("properties", {}))
        served[name] = ServedTool(tool, properties, lookup)
    return served


def _plain_id(request_id: Any) -> bool:
    if isinstance(request_id, str):
        return len(request_id) <= _MAX_ID_CHARS
    return type(request_id) is int and -_MAX_INT_ID < request_id < _MAX_INT_ID


def _validated(served: ServedTool, arguments: dict[str, Any]) -> dict[str, Any] | None:
    """The tool's validated arguments, when its model takes those sent unchanged; else None.

    Unknown names are the gateway's validation_error (mcp_server.refuse_unknown_arguments), and a
    value the model coerces ("10" for 10) is the SDK path's to answer; but for a UUID argument
    in its canonical text, which JSON cannot send as anything else."""
    if not arguments.keys() <= served.properties:
        return None
    try:
        validated = served.tool.fn_metadata.validate_arguments(arguments)
    except Exception:
        return None
    for key, value in arguments.items():
        kept = validated.get(key)
        if (type(kept) is not type(value) or kept != value) and not _uuid_as_sent(kept, value):
            return None
    return validated


def _uuid_as_sent(kept: object, value: object) -> bool:
    return isinstance(kept, uuid.UUID) and value == str(kept)
