"""The Grafana dashboard's PromQL, parsed: which metrics each expression reads."""

from __future__ import annotations

import json
from pathlib import Path

import promql_parser

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy/grafana/dashboards/taskgate.json"
# Grafana's variables, as Prometheus receives them once Grafana has filled them in.
_GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def metrics_read_by(expression: str) -> set[str]:
    """The metric names of every selector in the expression; ValueError if it is not PromQL."""
    for variable, value in _GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, value)
    names: set[str] = set()

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(str(node.name))
        return True

    promql_parser.walk(promql_parser.parse(expression), visit)
    return names
