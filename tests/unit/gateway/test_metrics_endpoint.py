"""Where /metrics is served: public by default, behind METRICS_TOKEN, or on METRICS_PORT only."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from starlette.applications import Starlette
from starlette.routing import Route

from shared.metrics_endpoint import MetricsEndpoint
from shared.settings import Settings
from tests.support.ports import free_port

TOKEN = "metrics-" + "m" * 32


def _endpoint(**settings: object) -> MetricsEndpoint:
    registry = CollectorRegistry()
    Counter("taskgate_probe", "A counter for this test.", registry=registry).inc()
    return MetricsEndpoint.for_gateway(Settings(_env_file=None, **settings), registry)  # type: ignore[arg-type]


async def _scrape(
    endpoint: MetricsEndpoint, headers: dict[str, str] | None = None
) -> httpx.Response:
    app = Starlette(routes=[Route("/metrics", endpoint.scrape)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        return await http.get("/metrics", headers=headers)


async def test_metrics_are_public_on_the_mcp_port_by_default() -> None:
    reply = await _scrape(_endpoint())
    assert reply.status_code == 200
    assert "taskgate_probe_total 1.0" in reply.text


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer"])
async def test_a_metrics_token_is_required_when_set(header: str | None) -> None:
    reply = await _scrape(
        _endpoint(metrics_token=TOKEN), {"Authorization": header} if header else None
    )
    assert reply.status_code == 401
    assert reply.json()["error_code"] == "unauthorized"
    assert TOKEN not in reply.text


async def test_the_metrics_token_opens_the_endpoint() -> None:
    reply = await _scrape(_endpoint(metrics_token=TOKEN), {"Authorization": f"Bearer {TOKEN}"})
    assert reply.status_code == 200
    assert "taskgate_probe_total" in reply.text


async def test_with_a_metrics_port_the_mcp_port_answers_not_found() -> None:
    reply = await _scrape(_endpoint(metrics_port=free_port()))
    assert reply.status_code == 404
    assert reply.json()["error_code"] == "not_found"


def test_with_a_metrics_port_the_metrics_are_served_there_while_the_gateway_runs() -> None:
    port = free_port()
    endpoint = _endpoint(metrics_port=port, mcp_host="127.0.0.1")
    with endpoint.own_port():
        reply = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert reply.status_code == 200
        assert "taskgate_probe_total 1.0" in reply.text
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
