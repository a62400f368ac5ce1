"""compose.yaml and deploy/k8s describe the read-replica topology. Docker is not here, so the
files are read and checked for the topology itself; `docker-compose config` runs when present."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from taskgate.allocator import JEMALLOC_IMAGE_PATH
from taskgate.cli import parser
from tests.support.compose import compose_cli

ROOT = Path(__file__).resolve().parents[2]
DESIGN_ENV = {
    "DATABASE_URL",
    "READ_DATABASE_URL",
    "FASTAPI_BASE_URL",
    "MCP_TRANSPORT",
    "MCP_HOST",
    "MCP_PORT",
    "JWT_SECRET",
    "CACHE_TTL",
    "CACHE_URL",
}
# What compose substitutes for ${VAR:-default} and ${VAR:?message} when VAR is unset.
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::-([^}]*)|:\?[^}]*)?\}")


def _interpolate(value: Any) -> Any:
    if isinstance(value, str):
        return _INTERPOLATION.sub(lambda m: m.group(2) or f"<{m.group(1)}>", value)
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    return value


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = _interpolate(yaml.safe_load((ROOT / "compose.yaml").read_text()))
    return dict(compose["services"])


def host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


def depends(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service.get("depends_on", {}).items()}


@pytest.mark.parametrize("name", ["replica", "replica2"])
def test_replica_is_cloned_from_the_primary_and_runs_hot_standby(
    services: dict[str, Any], name: str
) -> None:
    replica = services[name]
    assert depends(replica) == {"primary": "service_healthy"}
    assert replica["environment"]["PRIMARY_HOST"] == "primary"
    script_path = next(v.split(":")[0] for v in replica["volumes"] if "entrypoint" in v)
    script = (ROOT / script_path).read_text()
    assert "gosu postgres pg_basebackup" in script
    assert re.search(r"-D \"\$PGDATA\" -R\b", script), "pg_basebackup -R writes standby.signal"
    assert "PG_VERSION" in script, "only the first start clones"
    assert "hot_standby=on" in script
    assert "pg_is_in_recovery" in " ".join(replica["healthcheck"]["test"])
    assert any(f"{name}-data:" in v for v in replica["volumes"])


def test_primary_streams_wal_to_a_replication_user_it_admits(services: dict[str, Any]) -> None:
    primary = services["primary"]
    assert primary["image"].startswith("postgres:")
    assert "wal_level=replica" in primary["command"]
    init = next(v.split(":")[0] for v in primary["volumes"] if "initdb" in v)
    sql = (ROOT / init).read_text()
    assert "CREATE ROLE replicator LOGIN REPLICATION" in sql
    assert re.search(r"^echo \"host replication replicator all scram-sha-256\"", sql, re.M)
    assert any("primary-data" in v for v in primary["volumes"])


def test_read_model_role_is_select_only(services: dict[str, Any]) -> None:
    init = next(v.split(":")[0] for v in services["primary"]["volumes"] if "initdb" in v)
    sql = (ROOT / init).read_text()
    grants = [line for line in sql.splitlines() if "GRANT" in line and "taskgate_reader" in line]
    # No blanket grant on tables: the migration grants the tables the read tools need, by name
    # (tests/security/test_read_role.py checks the result on a real replica).
    assert not [g for g in grants if "TABLES" in g]
    assert "ALTER ROLE taskgate_reader SET default_transaction_read_only = on;" in sql


def test_backend_writes_to_the_primary_and_gateway_reads_from_the_replica(
    services: dict[str, Any],
) -> None:
    backend, gateway = services["backend"]["environment"], services["gateway"]["environment"]
    assert host_of(backend["DATABASE_URL"]) == "primary"
    assert host_of(gateway["READ_DATABASE_URL"]) == "replica"
    assert urlsplit(gateway["READ_DATABASE_URL"]).username == "taskgate_reader"
    assert host_of(gateway["FASTAPI_BASE_URL"]) == "backend"
    assert host_of(gateway["CACHE_URL"]) == "redis"
    assert [host_of(url) for url in gateway["READ_DATABASE_URLS"].split(",")] == [
        "replica",
        "replica2",
    ]
    assert depends(services["gateway"]) == {
        "backend": "service_healthy",
        "replica": "service_healthy",
        "replica2": "service_healthy",
        "redis": "service_healthy",
    }
    assert depends(services["backend"]) == {
        "migrate": "service_completed_successfully",
        "primary": "service_healthy",
    }
    assert host_of(services["migrate"]["environment"]["DATABASE_URL"]) == "primary"


def test_every_long_running_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    one_shot = {name for name, s in services.items() if s.get("restart") == "no"}
    assert one_shot == {"migrate"}
    for name, service in services.items():
        if name in one_shot:
            continue
        assert service["healthcheck"]["test"], name
    # One-shots are awaited by completion, not health.
    waited = {dep for s in services.values() for dep, c in depends(s).items() if dep in one_shot}
    assert all(
        depends(s)[dep] == "service_completed_successfully"
        for s in services.values()
        for dep in depends(s)
        if dep in one_shot
    )
    assert waited == one_shot


def test_app_services_use_design_settings_and_real_subcommands(services: dict[str, Any]) -> None:
    cli = parser()
    for name in ("migrate", "backend", "gateway"):
        service = services[name]
        assert set(service["environment"]) >= DESIGN_ENV, name
        assert service["command"][0] == "taskgate"
        cli.parse_args(service["command"][1:])  # exits on an unknown subcommand or flag
    assert services["gateway"]["environment"]["MCP_TRANSPORT"] == "http"


def test_docker_compose_accepts_the_file() -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    env = {**os.environ, "JWT_SECRET": "x" * 32}
    result = subprocess.run(
        [*cli, "-f", str(ROOT / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def _k8s(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / "deploy/k8s" / name).read_text()) if d]


def test_k8s_runs_several_probed_gateways_with_resources() -> None:
    cli = parser()
    docs = {name: _k8s(name) for name in ("gateway.yaml", "backend.yaml", "migrate.yaml")}
    gateway = next(d for d in docs["gateway.yaml"] if d["kind"] == "Deployment")
    assert gateway["spec"]["replicas"] >= 2
    for file, kind in (("gateway.yaml", "Deployment"), ("backend.yaml", "Deployment")):
        deployment = next(d for d in docs[file] if d["kind"] == kind)
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        containers = {c["name"]: c for c in pod["containers"]}
        container = containers[file.removesuffix(".yaml")]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        cli.parse_args(container["command"][1:])
        assert any(d["kind"] == "Service" for d in docs[file])
    job = docs["migrate.yaml"][0]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["taskgate", "migrate"]
    config = {d["kind"]: d for d in _k8s("config.yaml")}
    keys = set(config["ConfigMap"]["data"]) | set(config["Secret"]["stringData"])
    assert {*DESIGN_ENV, "ADMIN_TOKEN"} <= keys


def test_compose_and_k8s_gateways_preload_the_jemalloc_the_image_links(
    services: dict[str, Any],
) -> None:
    # taskgate.allocator: pymalloc kept 15-28 MB after each flood; a gateway runs on jemalloc.
    wanted = {"LD_PRELOAD": JEMALLOC_IMAGE_PATH, "PYTHONMALLOC": "malloc"}
    assert wanted.items() <= services["gateway"]["environment"].items()
    deployment = next(d for d in _k8s("gateway.yaml") if d["kind"] == "Deployment")
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    env = {e["name"]: e["value"] for e in containers["gateway"].get("env", [])}
    assert wanted.items() <= env.items()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "install -y --no-install-recommends libjemalloc2" in dockerfile
    assert re.search(
        rf'ln -s "[^"]+/libjemalloc\.so\.2" {re.escape(JEMALLOC_IMAGE_PATH)}', dockerfile
    )
