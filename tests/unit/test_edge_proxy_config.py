"""The edge proxy that compose and Kubernetes put in front of each taskgate server: each server
believes X-Forwarded-For from its own proxy alone, and the proxy's config is valid nginx."""

from __future__ import annotations

import ipaddress
import runpy
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tests.support.edge_proxy import MAIN, TEMPLATE, nginx_binary, render

ROOT = Path(__file__).resolve().parents[2]


def _k8s(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / "deploy/k8s" / name).read_text()) if d]


def test_the_proxy_replaces_forwarded_for_with_the_address_it_saw() -> None:
    text = TEMPLATE.read_text()
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in text
    bounds = ("client_header_timeout", "client_body_timeout", "keepalive_timeout", "limit_conn")
    for bound in bounds:
        assert f"\n    {bound} " in text, bound


def test_the_rendered_template_is_valid_nginx() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        variables = {"PROXY_PORT": "18000", "PROXY_UPSTREAM": "127.0.0.1:8080"}
        (root / "taskgate.conf").write_text(render({**variables, "REAL_IP_FROM": "10.0.0.0/8"}))
        (root / "nginx.conf").write_text(
            f"pid {root / 'nginx.pid'}; error_log {root / 'error.log'};"
            f"events {{}} http {{ include {root / 'taskgate.conf'}; }}"
        )
        check = _nginx_test(root)
    assert check.returncode == 0, check.stderr


def _nginx_test(root: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on root/nginx.conf."""
    return subprocess.run(
        [nginx_binary(), "-t", "-p", str(root), "-c", str(root / "nginx.conf")],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_shipped_main_config_is_valid_nginx_and_holds_more_than_a_flood() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        variables = {"PROXY_PORT": "18000", "PROXY_UPSTREAM": "127.0.0.1:8080"}
        (root / "taskgate.conf").write_text(render({**variables, "REAL_IP_FROM": "10.0.0.0/8"}))
        main = MAIN.read_text().replace("/tmp/", f"{root}/").replace("/var/log/nginx/", f"{root}/")
        (root / "nginx.conf").write_text(
            main.replace("/etc/nginx/conf.d/*.conf", str(root / "taskgate.conf"))
        )
        check = _nginx_test(root)
    assert check.returncode == 0, check.stderr
    # The attacks bench's flood holds 6,000 sockets; the image's own 1,024 let it in front.
    assert "worker_connections 16384;" in MAIN.read_text()


def test_compose_and_k8s_proxies_run_the_shipped_main_config() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    for name in ("backend-proxy", "gateway-proxy"):
        assert "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in services[name]["volumes"]
    (configmap,) = _k8s("edge-proxy.yaml")
    assert configmap["data"]["nginx.conf"] == MAIN.read_text()
    for file in ("backend.yaml", "gateway.yaml"):
        deployment = next(d for d in _k8s(file) if d["kind"] == "Deployment")
        containers = deployment["spec"]["template"]["spec"]["containers"]
        (proxy,) = [c for c in containers if c["name"] == "edge-proxy"]
        mounts = {m["mountPath"]: m for m in proxy["volumeMounts"]}
        assert mounts["/etc/nginx/nginx.conf"]["subPath"] == "nginx.conf"


def test_compose_servers_believe_their_two_proxies_alone() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    trusted = services["backend"]["environment"]["TRUSTED_PROXIES"].split(",")
    assert services["gateway"]["environment"]["TRUSTED_PROXIES"].split(",") == trusted
    proxies = {
        name: service["networks"]["default"]["ipv4_address"]
        for name, service in services.items()
        if name.endswith("-proxy")
    }
    assert sorted(proxies.values()) == sorted(trusted)
    assert services["backend-proxy"]["environment"]["PROXY_UPSTREAM"] == "backend:8000"
    assert services["gateway-proxy"]["environment"]["PROXY_UPSTREAM"] == "gateway:8001"
    # Clients reach the servers through the proxies only.
    assert "ports" not in services["backend"] and "ports" not in services["gateway"]
    subnet = yaml.safe_load((ROOT / "compose.yaml").read_text())["networks"]["default"]
    network = ipaddress.ip_network(subnet["ipam"]["config"][0]["subnet"])
    assert all(ipaddress.ip_address(a) in network for a in trusted)


def test_each_k8s_pod_believes_its_own_sidecar_alone() -> None:
    (config,) = [d for d in _k8s("config.yaml") if d["kind"] == "ConfigMap"]
    assert config["data"]["TRUSTED_PROXIES"] == "127.0.0.1"
    for file, name in (("backend.yaml", "backend"), ("gateway.yaml", "gateway")):
        deployment = next(d for d in _k8s(file) if d["kind"] == "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        containers = {c["name"]: c for c in pod["containers"]}
        proxy, app = containers["edge-proxy"], containers[name]
        env = {e["name"]: e["value"] for e in proxy["env"]}
        app_port = next(p["containerPort"] for p in app["ports"] if p["name"] == "app")
        assert env["PROXY_UPSTREAM"] == f"127.0.0.1:{app_port}"
        assert app["command"][-1] == str(app_port)
        service = next(d for d in _k8s(file) if d["kind"] == "Service")
        assert service["spec"]["ports"][0]["targetPort"] == "http"
        assert any(p["name"] == "http" for p in proxy["ports"])


def test_the_k8s_proxy_configmap_is_the_template() -> None:
    (configmap,) = _k8s("edge-proxy.yaml")
    assert configmap["data"]["default.conf.template"] == TEMPLATE.read_text(), (
        "regenerate it: uv run python deploy/nginx/render_k8s.py"
    )
    renderer = runpy.run_path(str(ROOT / "deploy" / "nginx" / "render_k8s.py"))
    assert renderer["render"]() == (ROOT / "deploy/k8s/edge-proxy.yaml").read_text()
