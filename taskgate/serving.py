"""How `taskgate gateway` and `taskgate backend` serve HTTP: on which event loop, with their
start-up heap frozen, and with every connection bounded.

The bounds live in the HTTP protocol (a subclass of uvicorn's httptools protocol), not in the
app, because a connection that never finishes its request head never reaches the app:

- an address that opens connections faster than NEW_CONNECTIONS_PER_CLIENT_PER_SECOND (after a
  burst of NEW_CONNECTIONS_PER_CLIENT_BURST; trusted proxies excepted) has the excess closed in
  accept() itself, with no transport, protocol or parser made for it;
- at most MAX_CONNECTIONS open, and MAX_CONNECTIONS_PER_CLIENT from one peer address (trusted
  proxies excepted). At either cap the oldest connection that is still waiting for a whole
  request (idle, or trickling one in) is closed to make room, so stalled sockets cannot keep
  out a client that sends its request at once, even from the attacker's own address; when
  every connection at the cap has a whole request in service, the newcomer gets a canned 503
  with Retry-After and is closed before anything is read;
- a request's head and body must both arrive within REQUEST_READ_TIMEOUT_SECONDS of its first
  byte (of the connection, for the first request), whatever trickles in meanwhile; then 408 and
  close (slowloris, slow body). uvicorn has no such timer: only one for idle keep-alive;
- a request head over MAX_HEAD_BYTES is refused (httptools itself has no bound);
- idle keep-alive connections close after KEEP_ALIVE_TIMEOUT_SECONDS (uvicorn's own timer);
- accept() failing for want of descriptors (EMFILE) is logged once per interval with a count,
  not once per retry.

uvicorn's limit_concurrency was not enough: it counts connections but answers only once a
request head is complete, so connections that never send one are held without bound.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import ipaddress
import json
import logging
import os
import resource
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, MutableMapping, MutableSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.errors import ErrorCode, ErrorEnvelope
from shared.settings import Settings
from taskgate.allocator import heap_release
from taskgate.connection_rate import NewConnectionRate, client_key

log = logging.getLogger(__name__)

# uvicorn's "auto" picks uvloop. Its libuv accepts one connection per loop iteration (libuv 1.45,
# "don't accept() connections in a loop"), and under load an iteration first runs every queued
# request: when N agents connect at once, the k-th is accepted after k-1 rounds of the others'
# calls (about 2 s for the 64th). asyncio's loop accepts every queued connection in one tick, and
# with httptools it serves as many calls a second here.
SERVING_LOOP = "asyncio"
# Descriptors kept for what is not a client connection: database pools, the backend client,
# Redis, log files. MAX_CONNECTIONS is lowered to fit the process's descriptor limit minus this.
FD_RESERVE = 256
# A request head (request line and headers) larger than this is refused with 400.
MAX_HEAD_BYTES = 64 * 1024
# Refusals and accept errors are logged at most once per this many seconds, with a count.
LOG_INTERVAL_SECONDS = 10.0
RETRY_AFTER_SECONDS = 1


def _canned(status: int, reason: str, code: ErrorCode, message: str, **details: Any) -> bytes:
    body = json.dumps(
        ErrorEnvelope(error_code=code, message=message, details=details).model_dump(mode="json")
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    )
    if "retry_after_seconds" in details:
        head += f"retry-after: {details['retry_after_seconds']}\r\n"
    return head.encode() + b"\r\n" + body


TOO_MANY_CONNECTIONS = _canned(
    503,
    "Service Unavailable",
    ErrorCode.RATE_LIMITED,
    f"too many connections; retry in {RETRY_AFTER_SECONDS} s",
    retry_after_seconds=RETRY_AFTER_SECONDS,
)
REQUEST_TOO_SLOW = _canned(
    408,
    "Request Timeout",
    ErrorCode.BAD_REQUEST,
    "the request was not received in time",
)


class ThrottledLog:
    """Counts events by kind and logs one warning per kind and interval, with the count."""

    def __init__(
        self, interval: float = LOG_INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._counts: Counter[str] = Counter()
        self._logged_at: dict[str, float] = {}

    def note(self, kind: str) -> None:
        self._counts[kind] += 1
        now = self._clock()
        if now - self._logged_at.get(kind, -self._interval) >= self._interval:
            log.warning("%s (%d since the last such line)", kind, self._counts.pop(kind))
            self._logged_at[kind] = now


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's X-Forwarded-For handling: believed from TRUSTED_PROXIES only.

    uvicorn believes it from loopback by default, so any local client could name itself.
    """
    if not settings.trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": settings.trusted_proxies}


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    max_per_client: int
    read_timeout: float
    new_per_second: float  # per client address; 0: no limit
    new_burst: int
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    trust_all: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        names = [name.strip() for name in settings.trusted_proxies.split(",") if name.strip()]
        networks = []
        for name in names:
            try:
                networks.append(ipaddress.ip_network(name, strict=False))
            except ValueError:
                continue  # "*" or a unix socket name
        return cls(
            max_connections=_fitting_descriptors(settings.max_connections),
            max_per_client=settings.max_connections_per_client,
            read_timeout=settings.request_read_timeout_seconds,
            new_per_second=settings.new_connections_per_client_per_second,
            new_burst=settings.new_connections_per_client_burst,
            trusted=tuple(networks),
            trust_all="*" in names,
        )

    def is_trusted(self, peer: str) -> bool:
        if self.trust_all:
            return True
        if not self.trusted:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)


def _fitting_descriptors(wanted: int) -> int:
    """`wanted`, lowered to fit the descriptor limit (raised to its hard limit first)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft == resource.RLIM_INFINITY or wanted <= soft - FD_RESERVE:
        return wanted
    fitted = max(1, soft - FD_RESERVE)
    log.warning(
        "MAX_CONNECTIONS=%d does not fit the open-file limit %d; serving at most %d",
        wanted,
        soft,
        fitted,
    )
    return fitted


def _break_transport_cycle(transport: asyncio.BaseTransport) -> None:
    """asyncio's socket transport (3.11, 3.12) holds a bound method of itself, so a closed one
    is freed only by a full garbage collection, which a quiet process seldom runs: after a flood,
    thousands of them stayed alive, pinning the memory they were allocated in. Dropped once the
    transport is lost (its last use), it is freed at once."""
    if hasattr(transport, "_read_ready_cb"):
        transport._read_ready_cb = None


def compact(table: MutableMapping[Any, Any] | MutableSet[Any]) -> None:
    """Rebuild a dict or set in place at the size of what it holds now, order kept. One keeps
    the table it grew to (a flood's thousands of slots) after its entries leave, until cleared."""
    if isinstance(table, MutableMapping):
        items = list(table.items())
        table.clear()
        for key, value in items:  # not update(): a Counter's would count the pairs
            table[key] = value
    else:
        members = list(table)
        table.clear()
        for member in members:
            table.add(member)


@dataclass
class ConnectionTables:
    """What the guarded protocol counts across connections, one per server."""

    per_client: Counter[str] = dataclasses.field(default_factory=Counter)
    # Connections waiting for a request (idle, or still receiving one), oldest first: all of
    # them, and by client address. At a cap, the oldest of these makes room for a newcomer.
    waiting: OrderedDict[HttpToolsProtocol, None] = dataclasses.field(default_factory=OrderedDict)
    waiting_by_client: dict[str, OrderedDict[HttpToolsProtocol, None]] = dataclasses.field(
        default_factory=dict
    )

    def compact(self) -> None:
        """Give back the slots a flood grew these tables to (an address's own waiting table is
        dropped once empty)."""
        compact(self.per_client)
        compact(self.waiting)
        compact(self.waiting_by_client)
        for mine in self.waiting_by_client.values():
            compact(mine)


class WholeReplies:
    """What a request cycle writes its reply to. uvicorn writes a response's head and its body
    apart: two send() calls and two TCP segments for every reply (the sends were a tenth of a
    cached read's gateway CPU). A head that announces its length is held here until the body's
    first bytes, and both leave in one send. Anything else goes at once: a chunked or streamed
    head, 100 Continue, a HEAD request's head (no body follows). Closing sends what is held."""

    __slots__ = ("_held", "_holds", "_transport")

    def __init__(self, transport: asyncio.Transport, holds: bool) -> None:
        self._transport = transport
        self._holds = holds  # one head per cycle, and none for a HEAD request
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif self._holds and data.startswith(b"HTTP/") and b"\r\ncontent-length: " in data:
            self._holds = False  # uvicorn spells header names in lower case
            self._held = data
        else:
            self._transport.write(data)

    def close(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._transport.write(held)
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # anything else uvicorn may ask of a transport
        return getattr(self._transport, name)


def guarded_protocol(limits: ConnectionLimits, tables: ConnectionTables) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the bounds above, counting in `tables`; one class per
    server."""
    per_client = tables.per_client
    waiting = tables.waiting
    waiting_by_client = tables.waiting_by_client
    refusals = ThrottledLog()

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _refused = False
        _peer = ""
        _deadline: asyncio.TimerHandle | None = None
        _head_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            peer = transport.get_extra_info("peername")
            self._peer = str(peer[0]) if isinstance(peer, tuple) else ""
            if (
                per_client[self._peer] >= limits.max_per_client
                and not limits.is_trusted(self._peer)
                and not self._evict(waiting_by_client.get(self._peer), "one client's")
            ) or (
                len(self.connections) >= limits.max_connections
                and not self._evict(waiting, "MAX_CONNECTIONS'")
            ):
                self._refused = True
                transport.write(TOO_MANY_CONNECTIONS)
                transport.close()
                refusals.note("connections refused: every connection at the cap is busy")
                return
            per_client[self._peer] += 1
            super().connection_made(transport)
            self._wait()
            self._arm_deadline()

        @staticmethod
        def _evict(candidates: OrderedDict[HttpToolsProtocol, None] | None, cap: str) -> bool:
            """Close the oldest connection that waits for a request; False when none does.

            A slow or idle connection gives way, so an attacker's stalled sockets cannot keep a
            newcomer with a whole request out, even one from the same address.
            """
            if not candidates:
                return False
            oldest = next(iter(candidates))
            assert isinstance(oldest, GuardedHttpToolsProtocol)
            oldest._stop_waiting()
            oldest.transport.close()
            refusals.note(f"connections closed: the oldest waiting one at {cap} cap")
            return True

        def _wait(self) -> None:
            waiting[self] = None
            waiting_by_client.setdefault(self._peer, OrderedDict())[self] = None

        def _stop_waiting(self) -> None:
            waiting.pop(self, None)
            mine = waiting_by_client.get(self._peer)
            if mine is not None:
                mine.pop(self, None)
                if not mine:
                    del waiting_by_client[self._peer]

        def connection_lost(self, exc: Exception | None) -> None:
            _break_transport_cycle(self.transport)
            if self._refused:
                return
            self._stop_waiting()
            self._disarm_deadline()
            per_client[self._peer] -= 1
            if per_client[self._peer] <= 0:
                del per_client[self._peer]
            super().connection_lost(exc)
            # uvicorn cancels its keep-alive timer only when the connection ended without an
            # error: after a reset (a client that closes with our reply unread) the timer stays
            # armed, and once it has fired, the protocol, its timer and the bound method make a
            # cycle that only a full collection frees. A flood's worth of them (1,200 protocols,
            # with their request cycles and transports: 8 MB) outlived the release after it.
            if self.timeout_keep_alive_task is not None:
                self.timeout_keep_alive_task.cancel()
                self.timeout_keep_alive_task = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._wait()  # idle keep-alive: waits for its next request

        def on_headers_complete(self) -> None:
            before = self.cycle
            super().on_headers_complete()
            cycle = self.cycle
            if cycle is not None and cycle is not before:  # a new request: its reply in one send
                replies = WholeReplies(self.transport, holds=cycle.scope["method"] != "HEAD")
                cycle.transport = cast(asyncio.Transport, replies)

        def on_message_begin(self) -> None:
            self._head_bytes = 0
            self._arm_deadline()
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count_head(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count_head(len(name) + len(value))
            super().on_header(name, value)

        def on_message_complete(self) -> None:
            self._disarm_deadline()
            self._stop_waiting()  # a whole request: it is served, never evicted
            super().on_message_complete()

        def _count_head(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > MAX_HEAD_BYTES:
                # httptools turns this into HttpParserCallbackError: uvicorn answers 400, closes.
                raise ValueError("request head too large")

        def _arm_deadline(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(limits.read_timeout, self._read_timed_out)

        def _disarm_deadline(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _read_timed_out(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                cycle.keep_alive = False
                if cycle.response_started:  # the app answered early; only the body is late
                    self.transport.close()
                    return
                cycle.disconnected = True  # the app sees http.disconnect; its reply is dropped
                cycle.message_event.set()
            refusals.note("connections closed: request not received within its timeout")
            self.transport.write(REQUEST_TOO_SLOW)
            self.transport.close()

    return GuardedHttpToolsProtocol


# Open connections that make a flood, whose end gives memory back (FloodRelease).
FLOOD_CONNECTIONS = 512
# uvicorn ticks (0.1 s each) that open connections must stay at or under an eighth of the flood's
# peak before memory is given back: the last connections and what they hold are freed as they
# close, after the count has fallen. Measured on the attacks bench's re-opening flood: a trim at
# the fall returned 1 MB, one 5 ticks later 50 MB, later ones under 1 MB more.
RELEASE_SETTLE_TICKS = 10
# uvicorn ticks every 0.1 s: idle addresses leave the new-connection rate table every 10 s.
RATE_SWEEP_TICKS = 100
# Over-rate connections refused in one accept() call at most; then the loop's other work gets
# its turn (the listener stays readable, so the next tick goes on).
REFUSALS_PER_ACCEPT = 256


class RateLimitedListener(socket.socket):
    """A listening socket whose accept() closes there and then a connection from an address over
    its new-connection rate, so asyncio's loop, which calls accept() on the listener it serves,
    never makes a transport, a protocol or a parser for it.

    Closed without a word: writing a 503 first cost as much as the accept() itself (profiled
    under the flood), and the flood is who gets nearly all of these.
    """

    rate: NewConnectionRate
    limits: ConnectionLimits
    refusals: ThrottledLog

    @classmethod
    def wrapping(cls, sock: socket.socket, limits: ConnectionLimits) -> RateLimitedListener:
        listener = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        listener.rate = NewConnectionRate(limits.new_per_second, limits.new_burst)
        listener.limits = limits
        listener.refusals = ThrottledLog()
        return listener

    def accept(self) -> tuple[socket.socket, Any]:
        for _ in range(REFUSALS_PER_ACCEPT):
            fd, address = self._accept()  # type: ignore[attr-defined]
            host = str(address[0]) if isinstance(address, tuple) else ""
            # A trusted proxy first: it is exempt, so it is neither charged nor kept in the table.
            if self.limits.is_trusted(host) or self.rate.admits(client_key(host)):
                return _without_nagle(socket.socket(self.family, self.type, fileno=fd)), address
            os.close(fd)
            self.refusals.note("connections refused: over one address's new-connection rate")
        raise BlockingIOError


class FloodRelease:
    """Gives memory back once a flood of connections has ended: when the open connections have
    been at least FLOOD_CONNECTIONS and have since stayed at or under an eighth of their peak for
    RELEASE_SETTLE_TICKS, one full garbage collection (what died in cycles, and the interpreter's
    free lists) and malloc_trim. Never on the hot path: it looks at one count per uvicorn tick
    (0.1 s)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release = release
        self._peak = 0
        self._settled_ticks = 0

    def observe(self, open_connections: int) -> None:
        self._peak = max(self._peak, open_connections)
        if self._peak < FLOOD_CONNECTIONS or open_connections > self._peak // 8:
            self._settled_ticks = 0
            return
        self._settled_ticks += 1
        if self._settled_ticks >= RELEASE_SETTLE_TICKS:
            self._peak = open_connections
            self._settled_ticks = 0
            self._release()


def release_memory() -> None:
    started, before = time.perf_counter(), _rss_mb()
    collected = gc.collect()
    give_back = heap_release()
    if give_back is not None:
        give_back()
    log.info(
        "connections fell back after a flood: %d objects collected, heap given back "
        "(RSS %.1f -> %.1f MB), in %.0f ms",
        collected,
        before,
        _rss_mb(),
        (time.perf_counter() - started) * 1000,
    )


def _rss_mb() -> float:
    """This process's resident set size in MB (0 where /proc is missing)."""
    try:
        resident = Path("/proc/self/statm").read_text().split()[1]
    except (OSError, IndexError):
        return 0.0
    return int(resident) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _without_nagle(conn: socket.socket) -> socket.socket:
    """TCP_NODELAY, as asyncio sets it on the connections of a listener it made itself (proto
    IPPROTO_TCP). uvicorn's bind_socket() leaves proto 0, so asyncio skips it on these: a reply
    written in two sends then waits out the peer's delayed ACK, 40 ms a call."""
    if conn.family in (socket.AF_INET, socket.AF_INET6):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


class GuardedServer(uvicorn.Server):
    """uvicorn's server on a RateLimitedListener when a new-connection rate is set, giving
    memory back after a flood and forgetting idle addresses' rates as it ticks."""

    def __init__(
        self,
        config: uvicorn.Config,
        limits: ConnectionLimits,
        tables: ConnectionTables,  # the protocol's (guarded_protocol), compacted after a flood
    ) -> None:
        super().__init__(config)
        self.limits = limits
        self.tables = tables
        self.listener: RateLimitedListener | None = None
        self.flood_release = FloodRelease(self.release_memory)

    def release_memory(self) -> None:
        """The tables that grew with the flood, compacted, then the heap given back."""
        self.tables.compact()
        compact(self.server_state.connections)
        compact(self.server_state.tasks)
        release_memory()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if sockets is None and self.limits.new_per_second > 0:
            self.listener = RateLimitedListener.wrapping(self.config.bind_socket(), self.limits)
            sockets = [self.listener]
        await super().startup(sockets=sockets)

    async def on_tick(self, counter: int) -> bool:
        self.flood_release.observe(len(self.server_state.connections))
        if self.listener is not None and counter % RATE_SWEEP_TICKS == 0:
            self.listener.rate.forget_idle()
        return await super().on_tick(counter)


def throttle_accept_errors(
    loop: asyncio.AbstractEventLoop, accept_errors: ThrottledLog | None = None
) -> None:
    """asyncio logs a traceback on every failed accept() retry; log once per interval instead."""
    accept_errors = accept_errors or ThrottledLog()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            accept_errors.note(f"accept() failed: {context.get('exception')}")
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


def freeze_startup_heap() -> None:
    """Put what start-up built (modules, schemas, the app) in the GC's permanent generation.

    A full collection then walks only what was made since: about 70 ms → 7 ms per gen-2 pass on
    the gateway, a pause that every call in flight waited through.
    """
    gc.collect()
    gc.freeze()


def serve(
    app: Any, settings: Settings, host: str, port: int, *, rate_new_connections: bool = True
) -> None:
    """Serve `app` on host:port until SIGINT/SIGTERM, with the bounds above; without the
    new-connection rate when `rate_new_connections` is False (the backend: see cli.py)."""
    limits = ConnectionLimits.from_settings(settings)
    tables = ConnectionTables()
    if not rate_new_connections:
        limits = dataclasses.replace(limits, new_per_second=0)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        loop=SERVING_LOOP,
        http=guarded_protocol(limits, tables),
        timeout_keep_alive=int(settings.keep_alive_timeout_seconds),
        **proxy_options(settings),
    )
    server = GuardedServer(config, limits, tables)
    freeze_startup_heap()

    async def run() -> None:
        throttle_accept_errors(asyncio.get_running_loop())
        await server.serve()

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(run())
