"""The deployment files hold together: compose's start-up order, the observability profile and
its dashboard, and the k8s manifests, which pass Kubernetes' own strict schemas."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from taskgate.cli import parser
from tests.support.compose import compose_cli
from tests.support.dashboard import dashboard_expressions, dashboard_panels, metrics_read_by

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/dashboards/taskgate.json"
# The release the manifests are checked against, and whatever newer one the validator knows.
KUBERNETES_VERSIONS = sorted({"1.37", latest_version()})


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text()))


def _mounted(service: dict[str, Any], target: str) -> Path:
    """The repository file or folder that a service mounts at `target`."""
    for volume in service["volumes"]:
        source, _, rest = str(volume).partition(":")
        if rest.split(":")[0] == target:
            return ROOT / source
    raise AssertionError(f"nothing is mounted at {target}")


def test_the_primary_is_healthy_only_once_it_answers_over_tcp(compose: dict[str, Any]) -> None:
    check = " ".join(compose["services"]["primary"]["healthcheck"]["test"])
    # The image's init scripts run on a server that listens on its unix socket only.
    assert "pg_isready -h 127.0.0.1" in check
    assert "-h 127.0.0.1" in " ".join(compose["services"]["replica"]["healthcheck"]["test"])


def test_the_migration_retries_until_the_primary_is_ready(compose: dict[str, Any]) -> None:
    command = compose["services"]["migrate"]["command"]
    args = parser().parse_args(command[1:])
    assert args.command == "migrate"
    assert args.wait >= 60


def test_the_replica_is_published_for_local_clients_on_loopback_only(
    compose: dict[str, Any],
) -> None:
    assert "127.0.0.1:5433:5432" in compose["services"]["replica"]["ports"]


def test_prometheus_scrapes_every_gateway_on_its_metrics_port(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["prometheus"]["profiles"] == ["observability"]
    assert services["grafana"]["profiles"] == ["observability"]
    metrics_port = int(services["gateway"]["environment"]["METRICS_PORT"])
    config = yaml.safe_load(
        _mounted(services["prometheus"], "/etc/prometheus/prometheus.yml").read_text()
    )
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "taskgate-gateway"]
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == ["gateway"]  # one address per scaled gateway container
    assert discovery["port"] == metrics_port


def test_grafana_is_provisioned_with_the_dashboard_and_its_datasource(
    compose: dict[str, Any],
) -> None:
    grafana = compose["services"]["grafana"]
    provisioning = _mounted(grafana, "/etc/grafana/provisioning")
    dashboards = _mounted(grafana, "/var/lib/grafana/dashboards")
    assert (dashboards / "taskgate.json").samefile(DASHBOARD)
    (provider,) = yaml.safe_load((provisioning / "dashboards/taskgate.yaml").read_text())[
        "providers"
    ]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    (source,) = yaml.safe_load((provisioning / "datasources/prometheus.yaml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    uids = {target["datasource"]["uid"] for p in dashboard_panels() for target in p["targets"]}  # type: ignore[attr-defined]
    assert uids == {source["uid"]}


def test_docker_compose_accepts_the_observability_profile() -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    result = subprocess.run(
        [*cli, "-f", str(ROOT / "compose.yaml"), "--profile", "observability", "config"],
        capture_output=True,
        text=True,
        env={**os.environ, "JWT_SECRET": "x" * 32},
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"prometheus", "grafana", "gateway", "replica"} <= set(services)


def _k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, document)
        for path in sorted((ROOT / "deploy/k8s").glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_k8s_manifests_pass_kubernetes_strict_schemas(version: str) -> None:
    documents = _k8s_documents()
    assert {"ConfigMap", "Deployment", "Service", "Job"} <= {d["kind"] for _, d in documents}
    for name, document in documents:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            kind, meta = document["kind"], document["metadata"]["name"]
            pytest.fail(f"{name}: {kind}/{meta}: {'.'.join(map(str, exc.path))}: {exc.message}")


def test_k8s_gateways_are_scraped_on_their_metrics_port() -> None:
    documents = dict(((d["kind"], d["metadata"]["name"]), d) for _, d in _k8s_documents())
    config = documents[("ConfigMap", "taskgate")]["data"]
    gateway = documents[("Deployment", "taskgate-gateway")]["spec"]["template"]
    annotations = gateway["metadata"]["annotations"]
    (container,) = gateway["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(annotations["prometheus.io/port"]) == int(config["METRICS_PORT"]) == ports["metrics"]


def test_the_k8s_dashboard_configmap_is_the_dashboard() -> None:
    (configmap,) = [d for name, d in _k8s_documents() if name == "grafana-dashboard.yaml"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["taskgate.json"]) == json.loads(DASHBOARD.read_text()), (
        "regenerate it: uv run python deploy/grafana/render_k8s.py"
    )


def test_every_dashboard_expression_is_promql_that_reads_taskgate_metrics() -> None:
    # Which of them the gateway exports: tests/e2e/test_dev_command.py, on a real /metrics.
    for expression in dashboard_expressions():
        metrics = metrics_read_by(expression)  # raises on a syntax error
        assert metrics, expression
        assert all(name.startswith("taskgate_") for name in metrics), expression
