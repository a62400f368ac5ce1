"""Write deploy/k8s/edge-proxy.yaml from taskgate.conf.template.

Run after changing the template: `uv run python deploy/nginx/render_k8s.py` (a test fails,
saying so, while the two differ). The backend and gateway pods mount the ConfigMap into their
edge-proxy sidecars, whose nginx image renders it with envsubst.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "taskgate.conf.template"
CONFIGMAP = HERE.parent / "k8s" / "edge-proxy.yaml"

HEADER = """\
# Generated from deploy/nginx/taskgate.conf.template by deploy/nginx/render_k8s.py.
apiVersion: v1
kind: ConfigMap
metadata:
  name: taskgate-edge-proxy
  labels: {app.kubernetes.io/part-of: taskgate}
data:
  default.conf.template: |
"""


def render() -> str:
    body = "".join(f"    {line}\n" if line else "\n" for line in TEMPLATE.read_text().splitlines())
    return HEADER + body


if __name__ == "__main__":
    CONFIGMAP.write_text(render())
