"""`taskgate dev --app` refuses, before anything starts, a spec the gateway would refuse; it
waits for the app at the spec's health_path, and an app that never answers there is stopped
with a message naming the URL and what to change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.spec_loader import SpecLoadError, load_spec
from taskgate.devstack import spawn_process, wait_healthy
from tests.support.ports import free_port

SPEC_MODULE = """
from sqlalchemy import BigInteger, Column, MetaData, Table
from taskgate.spec import AppSpec

METADATA = MetaData()
THINGS = Table("things", METADATA, Column("id", BigInteger, primary_key=True))
SPEC = AppSpec(name="things", openapi="openapi.json", owners={}, health_path="health")
"""
NAME_OWNERS = """
from sqlalchemy import Column, MetaData, String, Table, Uuid
from sqlalchemy.orm import registry
from taskgate.spec import AppSpec

METADATA = MetaData()
THINGS = Table("things", METADATA, Column("id", Uuid, primary_key=True), Column("owner", String))


class Thing:
    pass


registry(metadata=METADATA).map_imperatively(Thing, THINGS)
SPEC = AppSpec(name="things", openapi="openapi.json", owners={Thing: Thing.owner},
               metadata=METADATA)
"""
EMPTY_OPENAPI = '{"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}}'


def test_dev_refuses_a_spec_with_name_owners_in_one_line_before_starting(tmp_path: Path) -> None:
    (tmp_path / "things_spec.py").write_text(NAME_OWNERS)
    (tmp_path / "openapi.json").write_text(EMPTY_OPENAPI)
    ports = [str(free_port()), str(free_port())]
    done = subprocess.run(
        [sys.executable, "-P", "-m", "taskgate", "dev", "--app", "things_spec:SPEC",
         "--mcp-port", ports[0], "--backend-port", ports[1]],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "taskgate dev: app spec things_spec:SPEC: owners: the owner column things.owner holds str "
        "values: an owner column must hold the user's id, as integers (Integer, BigInteger) or "
        "UUIDs (sqlalchemy.Uuid, postgresql.UUID); another type (a name, an email) is not "
        "supported\n"
    )


def test_an_app_that_never_answers_its_health_path_is_stopped_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}/api/v1/utils/health-check/"
    silent = spawn_process("app", [sys.executable, "-c", "import time; time.sleep(60)"], {}, url)
    silent.hint = " (the spec's health_path)"
    with pytest.raises(RuntimeError) as refused:
        wait_healthy(silent, timeout=1.0)
    said = f"app did not answer GET {url} with 200 within 1s (the spec's health_path)"
    assert str(refused.value) == said
    assert silent.process.poll() is not None  # stopped, not left behind


def test_a_health_path_that_is_not_a_path_is_refused_when_the_spec_loads(tmp_path: Path) -> None:
    (tmp_path / "things_spec.py").write_text(SPEC_MODULE)
    (tmp_path / "openapi.json").write_text(EMPTY_OPENAPI)
    with pytest.raises(SpecLoadError, match="health_path must be a path, starting with /"):
        load_spec("things_spec:SPEC", app_dir=str(tmp_path))
