"""The gateway's Prometheus metrics, on a registry that the composition root creates.

Tool calls and backend errors are counted as they happen. Cache and read-your-writes counters
already live in the read model (ReadCache.stats, TaskReader.stats); a collector reads them at
scrape time instead of keeping a second copy. Replica lag is sampled in the background, so a
scrape never waits on the database.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
from mcp.types import CallToolResult, TextContent
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.backend_client import ResponseHook
from gateway.runtime import RuntimeRef
from readmodel.cache import BoundedMemoryCache
from shared.errors import ErrorCode
from shared.rules import READ_TOOLS

log = logging.getLogger("gateway.calls")

_CODES = {code.value for code in ErrorCode}
# From a cache hit (sub-millisecond) to a read that waited out a lagging replica (seconds).
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.tool_calls = Counter(
            "taskgate_tool_calls",
            "MCP tool calls by tool and outcome (ok, or the error_code of the envelope).",
            ["tool", "outcome"],
            registry=registry,
        )
        self.tool_latency = Histogram(
            "taskgate_tool_call_duration_seconds",
            "Time to answer an MCP tool call, by tool.",
            ["tool"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.rate_limited = Counter(
            "taskgate_rate_limited",
            "Tool calls refused with rate_limited because their user was over RATE_LIMIT_PER_USER.",
            ["tool"],
            registry=registry,
        )
        self.backend_errors = Counter(
            "taskgate_backend_errors",
            "Failed calls to the backend: unreachable/timed out, or answered with a 5xx.",
            ["reason"],
            registry=registry,
        )
        self.replica_lag_bytes = Gauge(
            "taskgate_replica_lag_bytes",
            "WAL the replica has received but not yet replayed, in bytes (sampled).",
            ["replica"],
            registry=registry,
        )
        self.replica_lag_seconds = Gauge(
            "taskgate_replica_lag_seconds",
            "Age of the last replayed transaction while WAL waits to be replayed (sampled).",
            ["replica"],
            registry=registry,
        )
        self.replica_up = Gauge(
            "taskgate_replica_up",
            "1 when the last lag sample reached the replica, else 0.",
            ["replica"],
            registry=registry,
        )
        # Every known label set starts at 0, so a dashboard shows 0 rather than "No data".
        for reason in ("unavailable", "status_5xx"):
            self.backend_errors.labels(reason)

    def start_at_zero(self, tool: str) -> None:
        """A tool's series, at 0 from the moment it is served: each outcome, its latency."""
        for outcome in ("ok", *sorted(_CODES)):
            self.tool_calls.labels(tool, outcome)
        self.tool_latency.labels(tool)
        self.rate_limited.labels(tool)


def outcome_of(result: Any) -> str:
    """'ok', or the error_code carried by an error result's envelope."""
    if not (isinstance(result, CallToolResult) and result.is_error):
        return "ok"
    first = result.content[0] if result.content else None
    if isinstance(first, TextContent):
        try:
            code = json.loads(first.text).get("error_code")
        except (ValueError, AttributeError):
            code = None
        if code in _CODES:
            return str(code)
    return "error"


class ToolCallObserver:
    """Counts each tool call, times it, and logs one line for it (under its request id)."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    async def observe(self, tool: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """`tool` is a label value: the caller passes 'unknown' for a name it does not serve."""
        started = time.perf_counter()
        outcome = "exception"
        try:
            result = await call()
            outcome = outcome_of(result)
            return result
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.tool_calls.labels(tool, outcome).inc()
            self.metrics.tool_latency.labels(tool).observe(elapsed)
            if outcome == ErrorCode.BACKEND_UNAVAILABLE:
                self.metrics.backend_errors.labels("unavailable").inc()
            log.info(
                "tool %s: %s in %.1f ms",
                tool,
                outcome,
                elapsed * 1000,
                extra={"tool": tool, "outcome": outcome, "duration_ms": elapsed * 1000},
            )


def backend_error_counter(metrics: GatewayMetrics) -> ResponseHook:
    """An httpx response hook for the backend client: counts the backend's 5xx answers."""

    async def count_server_errors(response: httpx.Response) -> None:
        if response.status_code >= 500:
            metrics.backend_errors.labels("status_5xx").inc()

    return count_server_errors


def _counters(stats: Any) -> dict[str, int]:
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        values = dataclasses.asdict(stats)
    else:
        values = stats.as_dict()
    return {k: int(v) for k, v in values.items() if isinstance(v, int | float)}


class ReadModelCollector(Collector):
    """Exposes the read model's own counters, and the TTLs in force, at scrape time."""

    def __init__(self, ref: RuntimeRef) -> None:
        self._ref = ref

    def collect(self) -> Iterator[Metric]:
        try:
            rt = self._ref.get()
        except RuntimeError:  # before start-up or after shutdown: nothing to report
            return
        for name, value in _counters(rt.reader.cache.stats).items():
            yield CounterMetricFamily(
                f"taskgate_cache_{name}", f"Read cache {name} since start.", value=value
            )
        for name, value in _counters(rt.reader.stats).items():
            yield CounterMetricFamily(
                f"taskgate_read_{name}",
                f"Reads: {name.replace('_', ' ')} since start (read-your-writes and replica).",
                value=value,
            )
        reads = CounterMetricFamily(
            "taskgate_replica_reads",
            "Reads served by each replica since start.",
            labels=["replica"],
        )
        for replica in rt.reader.replicas.replicas:
            reads.add_metric([replica.label], replica.reads)
        yield reads
        if isinstance(rt.reader.cache.cache, BoundedMemoryCache):
            yield GaugeMetricFamily(
                "taskgate_cache_bytes",
                "Bytes the in-process cache holds, of CACHE_MAX_BYTES.",
                value=rt.reader.cache.cache.used_bytes,
            )
        ttl = GaugeMetricFamily(
            "taskgate_cache_ttl_seconds", "The cache TTL in force, per read tool.", labels=["tool"]
        )
        for tool in READ_TOOLS:
            ttl.add_metric([tool], rt.reader.cache.ttl.ttl_for(tool))
        yield ttl
