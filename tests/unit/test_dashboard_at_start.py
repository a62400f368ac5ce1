"""Before the first event, every labelled counter a dashboard panel selects already has its
series, at 0: a new gateway or backend shows 0, not "No data"."""

from __future__ import annotations

from prometheus_client import generate_latest

from backend.app import create_app
from backend.metrics import BackendMetrics
from gateway.server import build_server
from shared.settings import Settings
from tests.support.dashboard import Selector, dashboard_panels, exposed_series, selectors_of

# Counters and histograms with labels; the others are gauges, or the read model's counters,
# which exist from the first scrape of a running gateway (tests/e2e/test_dev_command.py).
LABELLED = {
    "taskgate_tool_calls_total",
    "taskgate_tool_call_duration_seconds_bucket",
    "taskgate_rate_limited_total",
    "taskgate_backend_errors_total",
    "taskgate_backend_http_requests_total",
    "taskgate_backend_http_request_duration_seconds_bucket",
}


def _labelled_selectors() -> list[tuple[str, Selector]]:
    return [
        (str(panel["title"]), selector)
        for panel in dashboard_panels()
        for target in panel["targets"]  # type: ignore[attr-defined]
        for selector in selectors_of(target["expr"])
        if selector.name in LABELLED
    ]


def _fresh_exposition() -> str:
    settings = Settings(_env_file=None, read_database_url="postgresql+asyncpg://u:p@127.0.0.1:1/x")
    server, _ = build_server(settings)  # tools registered; nothing started, nothing called
    gateway = generate_latest(server.observer.metrics.registry).decode()
    app = create_app(settings)
    (scrape,) = [r for r in app.routes if getattr(r, "path", None) == "/metrics"]
    backend_metrics = scrape.endpoint.__self__  # type: ignore[attr-defined]
    assert isinstance(backend_metrics, BackendMetrics)
    return gateway + generate_latest(backend_metrics.registry).decode()


def test_every_labelled_counter_on_the_dashboard_has_series_before_any_event() -> None:
    selectors = _labelled_selectors()
    # The panels that showed "No data" on a quiet system are among them.
    names = {selector.name for _, selector in selectors}
    assert {"taskgate_rate_limited_total", "taskgate_backend_errors_total"} <= names
    assert any('status="429"' in str(selector) for _, selector in selectors)
    series = exposed_series(_fresh_exposition())
    for title, selector in selectors:
        matched = [one for one in series if selector.matches(one)]
        assert matched, f"{title}: {selector} has no series before the first event"
        assert all(one.value == 0 for one in matched), f"{title}: {selector} counted already"


def test_replica_lag_is_shown_per_replica_not_summed_per_gateway() -> None:
    lag = [
        target["expr"]
        for panel in dashboard_panels()
        for target in panel["targets"]  # type: ignore[attr-defined]
        if "taskgate_replica_" in target["expr"]
    ]
    assert lag
    assert all("by (replica)" in expr and "instance" not in expr for expr in lag), lag
