"""Write deploy/k8s/grafana-dashboard.yaml from dashboards/taskgate.json.

Run after changing the dashboard: `uv run python deploy/grafana/render_k8s.py` (a test fails,
saying so, while the two differ). The ConfigMap carries the `grafana_dashboard` label that
Grafana's dashboard sidecar (as in kube-prometheus-stack) loads.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
DASHBOARD = HERE / "dashboards" / "taskgate.json"
CONFIGMAP = HERE.parent / "k8s" / "grafana-dashboard.yaml"

HEADER = """\
# Generated from deploy/grafana/dashboards/taskgate.json by deploy/grafana/render_k8s.py.
# Grafana's dashboard sidecar loads ConfigMaps labelled grafana_dashboard.
apiVersion: v1
kind: ConfigMap
metadata:
  name: taskgate-grafana-dashboard
  labels: {app.kubernetes.io/part-of: taskgate, grafana_dashboard: "1"}
data:
  taskgate.json: |
"""


def render() -> str:
    body = "".join(f"    {line}\n" if line else "\n" for line in DASHBOARD.read_text().splitlines())
    return HEADER + body


if __name__ == "__main__":
    CONFIGMAP.write_text(render())
