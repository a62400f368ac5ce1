"""What docs/deploying.md tells an operator to run holds: the build context keeps secrets and
test leftovers out, compose publishes on loopback unless told otherwise, refuses a missing
secret in one line and scales gateways with no edit, and the Kubernetes commands apply files
that exist and pass Kubernetes' strict schemas, in an order that works."""

from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from tests.support.compose import compose_cli

ROOT = Path(__file__).resolve().parents[2]
DEPLOYING = ROOT / "docs/deploying.md"
K8S = ROOT / "deploy/k8s"


# -- the build context ---------------------------------------------------------------------


def _pattern(glob: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it: `**` any depth, `*` and `?` within a name."""
    out = ""
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif glob[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(glob[i]), i + 1
    return re.compile(out)


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves `path` out of the build context (a folder takes its contents)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for line in patterns:
        keep = line.startswith("!")
        rule = _pattern(line.removeprefix("!").strip("/"))
        if any(rule.fullmatch(prefix) for prefix in prefixes):
            result = not keep
    return result


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize(
    "path",
    [
        ".taskgate/dev.env",
        ".taskgate/dev.lock",
        ".taskgate/logs/gateway.log",
        "examples/app/.taskgate/dev.env",
        ".env",
        ".venv/bin/python",
        "tests/bench/.peer-venv/bin/python",
        "tests/conformance/node_modules/x/index.js",
        ".pytest_cache/v/cache/lastfailed",
        ".hypothesis/examples/x",
        "shared/__pycache__/settings.cpython-311.pyc",
        ".git/config",
    ],
)
def test_the_build_context_leaves_out_secrets_and_test_artifacts(path: str) -> None:
    assert ignored(path, _dockerignore()), f"{path} would be sent to the image build"


def test_the_build_context_keeps_everything_the_dockerfile_copies() -> None:
    copied = [
        source
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ") and "--from" not in line
        for source in shlex.split(line)[1:-1]
    ]
    assert {"pyproject.toml", "uv.lock", "shared", "gateway", "taskgate"} <= set(copied)
    for source in copied:
        files = [source] if (ROOT / source).is_file() else [
            str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*.py")
        ]  # fmt: skip
        assert files, source
        assert not [f for f in files if ignored(f, _dockerignore())], source


def test_the_dockerignore_matcher_reads_folders_and_exceptions() -> None:
    assert ignored("a/b/c.txt", ["a"])
    assert not ignored(".env.example", [".env.*", "!.env.example"])
    assert ignored("x/node_modules/y", ["**/node_modules"])
    assert not ignored("nodes/y", ["**/node_modules"])


# -- compose -------------------------------------------------------------------------------


def _compose(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    cli = compose_cli()
    assert cli is not None, "install docker-compose (Debian's package; .ci/run does)"
    base = {k: v for k, v in os.environ.items() if k not in ("JWT_SECRET", "TASKGATE_BIND")}
    return subprocess.run(
        [*cli, "-f", str(ROOT / "compose.yaml"), *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        check=False,
        timeout=60,
    )


def _published(config: dict[str, Any], service: str) -> list[tuple[str, str]]:
    """(host address, host port or range) of each port a service publishes."""
    found = []
    for port in config["services"][service].get("ports", []):
        if isinstance(port, dict):  # compose v2 prints the long form
            found.append((port.get("host_ip", ""), str(port.get("published", ""))))
        else:
            host_ip, published, _ = str(port).rsplit(":", 2)
            found.append((host_ip, published))
    return found


def test_compose_publishes_on_loopback_by_default_and_everywhere_when_told() -> None:
    default = _compose("config", JWT_SECRET="x" * 32)
    assert default.returncode == 0, default.stderr
    config = yaml.safe_load(default.stdout)
    published = {name: _published(config, name) for name in config["services"]}
    assert published["backend"] and published["gateway"]
    for name, ports in published.items():
        assert all(host == "127.0.0.1" for host, _ in ports), (name, ports)

    everywhere = _compose("config", JWT_SECRET="x" * 32, TASKGATE_BIND="0.0.0.0")
    assert everywhere.returncode == 0, everywhere.stderr
    opened = yaml.safe_load(everywhere.stdout)
    for name in ("backend", "gateway"):
        assert {host for host, _ in _published(opened, name)} == {"0.0.0.0"}, name
    # The databases, Redis and the observability tools stay on loopback whatever is set.
    for name in ("replica", "prometheus", "grafana"):
        assert {host for host, _ in _published(opened, name)} <= {"127.0.0.1"}, name


def test_compose_without_jwt_secret_says_so_and_points_to_the_docs() -> None:
    refused = _compose("config")
    assert refused.returncode != 0
    assert "set JWT_SECRET, see docs/deploying.md" in refused.stderr
    assert (ROOT / "docs/deploying.md").is_file()


def test_gateways_scale_with_no_edit() -> None:
    config = yaml.safe_load(_compose("config", JWT_SECRET="x" * 32).stdout)
    gateway = config["services"]["gateway"]
    assert "container_name" not in gateway  # a fixed name allows one container
    ((_, published),) = _published(config, "gateway")
    first, _, last = published.partition("-")
    assert last, f"gateway publishes one fixed port ({published}): a second one could not bind"
    assert int(last) - int(first) + 1 >= 3
    assert "docker compose up -d --scale gateway=3" in DEPLOYING.read_text()


# -- Kubernetes, as the page says to run it -------------------------------------------------


def _kubernetes_commands() -> list[list[str]]:
    section = DEPLOYING.read_text().split("## Kubernetes", 1)[1]
    commands: list[list[str]] = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                commands.append(shlex.split(command, comments=True))
    return commands


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _manifests() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (d["kind"], d["metadata"]["name"]): d
        for path in K8S.glob("*.yaml")
        for d in _documents(path)
    }


def test_every_manifest_is_applied_once_in_an_order_that_works() -> None:
    commands = _kubernetes_commands()
    applied = [c[c.index("-f") + 1] for c in commands if c[:2] == ["kubectl", "apply"]]
    files = [path for path in applied if path != "-"]
    assert sorted(files) == sorted(f"deploy/k8s/{p.name}" for p in K8S.glob("*.yaml"))
    order = {path: applied.index(path) for path in files}
    # Settings first; the migration finishes before the backend starts; Redis before gateways.
    assert order["deploy/k8s/config.yaml"] == 0
    assert order["deploy/k8s/migrate.yaml"] < order["deploy/k8s/backend.yaml"]
    assert order["deploy/k8s/redis.yaml"] < order["deploy/k8s/gateway.yaml"]
    flat = [" ".join(c) for c in commands]
    waits = [i for i, c in enumerate(flat) if c.startswith("kubectl wait --for=condition=complete")]
    assert waits and flat.index("kubectl apply -f deploy/k8s/migrate.yaml") < waits[0]
    assert waits[0] < flat.index("kubectl apply -f deploy/k8s/backend.yaml")


def test_every_object_a_command_names_exists() -> None:
    manifests = _manifests()
    named = 0
    for command in _kubernetes_commands():
        for word in command:
            kind = {"job": "Job", "deployment": "Deployment"}.get(word.split("/")[0])
            if kind and "/" in word:
                assert (kind, word.split("/", 1)[1]) in manifests, word
                named += 1
        if command[:3] == ["kubectl", "set", "image"]:
            deployment = manifests[("Deployment", command[3].split("/", 1)[1])]
            containers = deployment["spec"]["template"]["spec"]["containers"]
            assert command[4].split("=")[0] in {c["name"] for c in containers}
    assert named >= 5


def test_the_image_edit_matches_every_manifest_image() -> None:
    (sed,) = [c for c in _kubernetes_commands() if c[0] == "sed"]
    old = sed[2].split("#")[1]  # s#image: taskgate:latest#image: ...#
    images = [
        f"image: {c['image']}"
        for d in _manifests().values()
        for c in d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        if str(c["image"]).startswith("taskgate")
    ]
    assert images and all(image == old for image in images)


@pytest.mark.parametrize("version", sorted({"1.37", latest_version()}))
def test_the_secret_the_page_creates_is_the_secret_the_manifests_read(version: str) -> None:
    (create,) = [c for c in _kubernetes_commands() if c[:3] == ["kubectl", "create", "secret"]]
    literals = dict(
        c.split("=", 1)[1].split("=", 1) for c in create if c.startswith("--from-literal=")
    )
    manifests = _manifests()
    declared = manifests[("Secret", create[4])]["stringData"]
    assert set(literals) == set(declared)
    # What `--dry-run=client -o yaml` prints, checked as kubectl apply would receive it.
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": create[4]},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in literals.items()},
    }
    kubernetes_validate.validate(secret, version, strict=True)
    for url in ("DATABASE_URL", "READ_DATABASE_URL"):
        assert literals[url].startswith("postgresql+asyncpg://"), url
