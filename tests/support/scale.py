"""Gateway processes side by side over a pair with two replicas, and what their metrics and
answers show."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families

from taskgate.devstack import spawn_component, wait_healthy
from taskgate.pgpair import PgPair
from tests.support.agents import Agent
from tests.support.config import TEST_JWT_SECRET
from tests.support.mcp_results import error_code, ok
from tests.support.ports import free_port
from tests.support.readmodel import TaskReader

READS_METRIC = "taskgate_replica_reads_total"


MakeReader = Callable[[bool], Awaitable[TaskReader]]


@contextmanager
def running_gateways(
    pair: PgPair, backend_url: str, env: dict[str, str], count: int = 2
) -> Iterator[list[str]]:
    """`count` gateway processes with the same settings; yields their base URLs."""
    base = {
        "DATABASE_URL": pair.database_url,
        "FASTAPI_BASE_URL": backend_url,
        "JWT_SECRET": TEST_JWT_SECRET,
        "MCP_TRANSPORT": "http",
        "MCP_HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "REPLICA_LAG_SAMPLE_SECONDS": "1",
        # The machine is shared and loaded: a slow answer is not what these tests are about.
        "REPLICA_TIMEOUT": "5",
        "RATE_LIMIT_PER_USER": "0",  # the per-user limit is not what these tests are about
    }
    with ExitStack() as running:
        started = []
        for index in range(count):
            port = free_port()
            component = spawn_component(
                f"gateway {index}",
                ["gateway", "--transport", "http", "--port", str(port)],
                {**base, **env},
                f"http://127.0.0.1:{port}/healthz",
            )
            running.callback(component.stop)
            started.append((component, f"http://127.0.0.1:{port}"))
        for component, _ in started:  # started together: each takes seconds to import
            wait_healthy(component, timeout=120)
        yield [url for _, url in started]


@asynccontextmanager
async def mcp_session(base_url: str, token: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
        Client(streamable_http_client(f"{base_url}/mcp", http_client=http)) as client,
    ):
        yield client


def replica_reads(base_urls: list[str]) -> Counter[str]:
    """Reads served per replica label, summed over the gateways."""
    reads: Counter[str] = Counter()
    for base in base_urls:
        scraped = httpx.get(f"{base}/metrics", timeout=10).text
        for family in text_string_to_metric_families(scraped):
            for sample in family.samples:
                if sample.name == READS_METRIC:
                    reads[sample.labels["replica"]] += int(sample.value)
    return reads


@dataclass
class PairsOutcome:
    pairs: int = 0
    stale: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


async def write_read_pairs(gateways: list[str], agents: list[Agent], pairs: int) -> PairsOutcome:
    """`pairs` write-then-read pairs, spread over the agents (concurrent with each other,
    in order for each), each written through one gateway and read through the other.

    A stale read is an answer without the write just acknowledged.
    """
    outcome = PairsOutcome()
    started = time.perf_counter()

    async def one_agent(agent: Agent, count: int, offset: int) -> None:
        async with (
            mcp_session(gateways[0], agent.token) as first,
            mcp_session(gateways[1], agent.token) as second,
        ):
            for i in range(count):
                writer, reader = (first, second) if (i + offset) % 2 == 0 else (second, first)
                created = await writer.call_tool("create_task", {"title": f"pair {i}"})
                if created.is_error:
                    outcome.errors["write:" + error_code(created)] += 1
                    continue
                task_id = ok(created)["id"]
                listed = await reader.call_tool("list_tasks", {"limit": 1})
                outcome.pairs += 1
                if listed.is_error:
                    outcome.errors[error_code(listed)] += 1
                elif [t["id"] for t in ok(listed)["tasks"]] != [task_id]:
                    outcome.stale += 1

    share, extra = divmod(pairs, len(agents))
    await asyncio.gather(
        *(one_agent(agent, share + (1 if i < extra else 0), i) for i, agent in enumerate(agents))
    )
    outcome.seconds = time.perf_counter() - started
    return outcome
