"""`taskgate backend` and `taskgate gateway` refuse to start on a missing, placeholder or short
secret, with one line on stderr that says what to set, and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shared.settings import InsecureSettings, Settings
from taskgate.cli import main

ROOT = Path(__file__).resolve().parents[2]
GOOD_SECRET = "Jq7-vR2mXw9LpK4zT8bN1cH5fD3sG6yA0eU"
K8S_SECRET = next(
    d
    for d in yaml.safe_load_all((ROOT / "deploy/k8s/config.yaml").read_text())
    if d and d["kind"] == "Secret"
)["stringData"]

# (environment, a word the refusal must contain)
REFUSED = {
    "jwt secret missing": ({}, "JWT_SECRET"),
    "jwt secret the old default": (
        {"JWT_SECRET": "change-me-in-production-this-is-not-a-secret"},
        "JWT_SECRET",
    ),
    "jwt secret the k8s placeholder": ({"JWT_SECRET": K8S_SECRET["JWT_SECRET"]}, "JWT_SECRET"),
    "jwt secret short": ({"JWT_SECRET": "s" * 31}, "JWT_SECRET"),
    "admin token short": ({"JWT_SECRET": GOOD_SECRET, "ADMIN_TOKEN": "k7Qz9-short"}, "ADMIN_TOKEN"),
    "jwt secret 40 spaces": ({"JWT_SECRET": " " * 40}, "JWT_SECRET"),
    "jwt secret one repeated character": ({"JWT_SECRET": "a" * 32}, "JWT_SECRET"),
    "jwt secret a repeated pattern": ({"JWT_SECRET": "k7Qz" * 10}, "JWT_SECRET"),
    "jwt secret changeme repeated": ({"JWT_SECRET": "changeme" * 5}, "JWT_SECRET"),
    "jwt secret CHANGE_ME with a tail": (
        {"JWT_SECRET": "CHANGE_ME_" + "Jq7vR2mXw9LpK4zT8bN1cH5f"},
        "JWT_SECRET",
    ),
    "jwt secret a password": ({"JWT_SECRET": "Pass.Word-Jq7vR2mXw9LpK4zT8bN1cH5f"}, "JWT_SECRET"),
    "admin token one repeated character": (
        {"JWT_SECRET": GOOD_SECRET, "ADMIN_TOKEN": "a" * 32},
        "ADMIN_TOKEN",
    ),
    "admin token CHANGE_ME with a tail": (
        {"JWT_SECRET": GOOD_SECRET, "ADMIN_TOKEN": "change_me_" + "Jq7vR2mXw9LpK4zT8bN1cH5f"},
        "ADMIN_TOKEN",
    ),
    "admin token 40 spaces": ({"JWT_SECRET": GOOD_SECRET, "ADMIN_TOKEN": " " * 40}, "ADMIN_TOKEN"),
    "jwt secret low in entropy, not a pattern": (
        {"JWT_SECRET": "a" * 30 + "b" + "a" * 5 + "c"},
        "JWT_SECRET",
    ),
    "admin token the k8s placeholder": (
        {"JWT_SECRET": GOOD_SECRET, "ADMIN_TOKEN": K8S_SECRET["ADMIN_TOKEN"]},
        "ADMIN_TOKEN",
    ),
}


def _run_taskgate(
    args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"JWT_SECRET", "ADMIN_TOKEN"}}
    return subprocess.run(
        [sys.executable, "-m", "taskgate", *args],
        env={**base, **env},
        cwd=cwd,  # no .env there
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _assert_one_refusal_line(stderr: str, names: str, env: dict[str, str]) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("taskgate: refusing to start: ")
    assert names in lines[0] and "set" in lines[0]
    assert "Traceback" not in stderr
    # The refused value itself is never echoed.
    for value in env.values():
        assert value not in stderr


@pytest.mark.parametrize("command", ["backend", "gateway"])
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_server_refuses_a_weak_secret_with_one_line_and_exit_2(
    command: str,
    case: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The command line's own entry point in this process: the same code as the process below,
    without an interpreter's start-up per case."""
    env, names = REFUSED[case]
    for name in ("JWT_SECRET", "ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no .env there
    with pytest.raises(SystemExit) as exited:
        main([command, "--port", "1"])
    assert exited.value.code == 2
    _assert_one_refusal_line(capsys.readouterr().err, names, env)


@pytest.mark.parametrize("command", ["backend", "gateway"])
def test_the_server_process_exits_2_with_the_one_line(command: str, tmp_path: Path) -> None:
    env, names = REFUSED["jwt secret the old default"]
    result = _run_taskgate([command, "--port", "1"], env, tmp_path)
    assert result.returncode == 2, result.stderr
    _assert_one_refusal_line(result.stderr, names, env)


def test_the_gateway_on_stdio_is_guarded_too(tmp_path: Path) -> None:
    result = _run_taskgate(["gateway", "--transport", "stdio"], {}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "JWT_SECRET" in result.stderr


def test_strong_secrets_and_an_unset_or_empty_admin_token_pass() -> None:
    for admin_token in (None, "", "Zx8-Lm3qRt7WpK2vN9bC4hJ6fD1sG5yA0eT"):
        Settings(
            _env_file=None,
            jwt_secret=GOOD_SECRET,
            admin_token=admin_token,
        ).require_production_secrets()


def test_constructing_settings_with_the_placeholder_still_works_in_process() -> None:
    settings = Settings(_env_file=None)
    with pytest.raises(InsecureSettings):
        settings.require_production_secrets()


def test_the_k8s_secret_holds_no_value_a_server_would_start_with() -> None:
    for key in ("JWT_SECRET", "ADMIN_TOKEN"):
        assert "CHANGE-ME" in K8S_SECRET[key], key
    settings = Settings(
        _env_file=None,
        jwt_secret=K8S_SECRET["JWT_SECRET"],
        admin_token=K8S_SECRET["ADMIN_TOKEN"],
    )
    with pytest.raises(InsecureSettings):
        settings.require_production_secrets()
    for url in ("DATABASE_URL", "READ_DATABASE_URL"):
        assert ":CHANGE-ME@" in K8S_SECRET[url], url


def test_compose_has_no_default_jwt_secret_or_admin_token() -> None:
    anchors = yaml.safe_load((ROOT / "compose.yaml").read_text())["x-app-env"]
    assert anchors["JWT_SECRET"].startswith("${JWT_SECRET:?")  # compose refuses to start without
    assert anchors["ADMIN_TOKEN"] == "${ADMIN_TOKEN:-}"  # empty: the admin API stays off
