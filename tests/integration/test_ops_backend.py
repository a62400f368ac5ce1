"""The backend's operator surface, in process on the real primary: request ids and /metrics."""

from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from backend.app import create_app
from shared.settings import Settings
from tests.support.backend_api import app_running


async def test_backend_logs_each_request_under_the_callers_request_id(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with app_running(create_app(settings)) as client:
        with caplog.at_level(logging.INFO, logger="backend.requests"):
            reply = await client.get("/readyz", headers={"X-Request-ID": "trace-42.a"})
            forged = await client.get("/healthz", headers={"X-Request-ID": "x\n" + "y" * 80})
    assert reply.status_code == 200
    assert reply.headers["X-Request-ID"] == "trace-42.a"
    # An id that could forge log lines is replaced, not echoed.
    assert forged.headers["X-Request-ID"] not in ("", "x\n" + "y" * 80)
    lines = [r for r in caplog.records if r.name == "backend.requests"]
    assert lines[0].__dict__["request_id"] == "trace-42.a"
    assert lines[0].getMessage().startswith("GET /readyz -> 200")
    assert lines[1].__dict__["request_id"] == forged.headers["X-Request-ID"]


async def test_backend_metrics_count_requests_by_route_template(settings: Settings) -> None:
    async with app_running(create_app(settings)) as client:
        for task_id in (101, 202):
            assert (await client.get(f"/api/v1/tasks/{task_id}")).status_code == 401
        await client.get("/no/such/path")
        scraped = (await client.get("/metrics")).text
    counts = {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(scraped)
        if family.name == "taskgate_backend_http_requests"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert counts[("GET", "/tasks/{task_id}", "401")] == 2
    assert counts[("other", "unmatched", "404")] == 1
    assert not any("101" in route or "no/such" in route for _, route, _ in counts)
