"""The Grafana dashboard's PromQL, parsed: which metrics each expression reads, and whether its
selectors match series that a live exposition holds."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import promql_parser
from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy/grafana/dashboards/taskgate.json"
# Grafana's variables, as Prometheus receives them once Grafana has filled them in.
_GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


@dataclass(frozen=True)
class Series:
    name: str
    labels: dict[str, str]
    value: float = 0.0


@dataclass(frozen=True)
class Selector:
    name: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value), op one of = != =~ !~

    def matches(self, series: Series) -> bool:
        return series.name == self.name and all(
            _holds(op, value, series.labels.get(label, "")) for label, op, value in self.matchers
        )

    def __str__(self) -> str:
        inner = ", ".join(f'{label}{op}"{value}"' for label, op, value in self.matchers)
        return f"{self.name}{{{inner}}}"


def _holds(op: str, value: str, have: str) -> bool:
    if op == "=":
        return have == value
    if op == "!=":
        return have != value
    fully = re.fullmatch(value, have) is not None  # PromQL anchors its regexes
    return fully if op == "=~" else not fully


_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


def dashboard_panels() -> list[dict[str, object]]:
    """Every panel that queries (rows, which only group, have no targets)."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [panel for panel in dashboard["panels"] if panel.get("targets")]


def dashboard_expressions() -> list[str]:
    return [
        str(target["expr"])
        for panel in dashboard_panels()
        for target in panel["targets"]  # type: ignore[attr-defined]
    ]


def _parsed(expression: str) -> promql_parser.Expr:
    for variable, value in _GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, value)
    return promql_parser.parse(expression)


def selectors_of(expression: str) -> list[Selector]:
    """Every vector selector in the expression; ValueError if it is not PromQL."""
    found: list[Selector] = []

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            matchers = tuple(
                (m.name, _OPS[str(m.op).rsplit(".", 1)[-1]], m.value)
                for m in node.matchers.matchers
            )
            found.append(Selector(str(node.name), matchers))
        return True

    promql_parser.walk(_parsed(expression), visit)
    return found


def metrics_read_by(expression: str) -> set[str]:
    """The metric names of every selector in the expression; ValueError if it is not PromQL."""
    return {selector.name for selector in selectors_of(expression)}


def exposed_series(exposition: str) -> list[Series]:
    """Every sample of a Prometheus text exposition, as the series Prometheus would store."""
    return [
        Series(sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    ]
