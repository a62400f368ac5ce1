"""Write deploy/k8s/edge-proxy.yaml from taskgate.conf.template and nginx.conf.

Run after changing the template: `uv run python deploy/nginx/render_k8s.py` (a test fails,
saying so, while the two differ). The backend and gateway pods mount the ConfigMap into their
edge-proxy sidecars, whose nginx image renders it with envsubst.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "taskgate.conf.template"
MAIN = HERE / "nginx.conf"
CONFIGMAP = HERE.parent / "k8s" / "edge-proxy.yaml"

HEADER = """\
# Generated from deploy/nginx/taskgate.conf.template and nginx.conf by deploy/nginx/render_k8s.py.
apiVersion: v1
kind: ConfigMap
metadata:
  name: taskgate-edge-proxy
  labels: {app.kubernetes.io/part-of: taskgate}
data:
  default.conf.template: |
"""


def _indented(path: Path) -> str:
    return "".join(f"    {line}\n" if line else "\n" for line in path.read_text().splitlines())


def render() -> str:
    # nginx.conf is mounted over the image's own (subPath); the image's entrypoint renders only
    # *.template files, so it is left alone in the templates folder.
    return HEADER + _indented(TEMPLATE) + "  nginx.conf: |\n" + _indented(MAIN)


if __name__ == "__main__":
    CONFIGMAP.write_text(render())
