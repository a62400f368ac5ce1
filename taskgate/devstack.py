"""The whole system on one machine: the PostgreSQL primary and replicas, the backend, the
gateways (and Redis when there are several), for `taskgate dev` and end-to-end tests."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.api import API_PREFIX, LOGIN_PATH
from shared.migrate import upgrade_to_head
from taskgate.allocator import gateway_allocator_env
from taskgate.app_schema import create_app_schema
from taskgate.app_stack import UserApp
from taskgate.dev_logs import copy_to_rotating_log
from taskgate.pgpair import READER_ROLE, PgPair, free_port
from taskgate.redis_server import RedisServer

DEMO_EMAIL = "demo@example.com"


def say(message: str) -> None:
    """A progress line of `taskgate dev` itself, on stderr."""
    print(f"taskgate: {message}", file=sys.stderr, flush=True)


@dataclass
class Component:
    name: str
    process: subprocess.Popen[bytes]
    health_url: str
    log: Path | None = None  # where its output goes; None: our own stderr
    hint: str = ""  # what to change when it never answers its health URL

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn_component(
    name: str, args: list[str], env: dict[str, str], health_url: str, log: Path | None = None
) -> Component:
    """Start `taskgate <args>` in a child process; wait_healthy waits for it.

    With `log`, the child's stdout and stderr go to that file, size-capped and rotated
    (taskgate.dev_logs), else to ours.
    """
    # -P: the working folder is not put first on sys.path, where a user's app (taskgate dev
    # --app) may have packages named like taskgate's own.
    argv = [sys.executable, "-P", "-m", "taskgate", *args]
    if args[:1] == ["gateway"]:
        # On jemalloc where the machine has it, so a flood's memory goes back (taskgate.allocator);
        # `env` may still choose otherwise.
        env = {**gateway_allocator_env(), **env}
    return spawn_process(name, argv, env, health_url, log)


def spawn_process(
    name: str, argv: list[str], env: dict[str, str], health_url: str, log: Path | None = None
) -> Component:
    """Start `argv` in a child process, as spawn_component does."""
    process = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if log is not None else None,
        stderr=subprocess.STDOUT if log is not None else None,
    )
    if log is not None and process.stdout is not None:
        copy_to_rotating_log(process.stdout, log)
    return Component(name, process, health_url, log)


def wait_healthy(component: Component, timeout: float = 90.0) -> None:
    """Wait until the component's health URL answers 200, or stop it and raise."""
    deadline = time.monotonic() + timeout
    where = f"; its log: {component.log}" if component.log else ""
    while time.monotonic() < deadline:
        if component.process.poll() is not None:
            raise RuntimeError(
                f"{component.name} exited with code {component.process.returncode} "
                f"while starting{where}"
            )
        try:
            if httpx.get(component.health_url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    component.stop()
    raise RuntimeError(
        f"{component.name} did not answer GET {component.health_url} with 200 within "
        f"{timeout:.0f}s{component.hint}{where}"
    )


@dataclass
class Stack:
    pair: PgPair
    backend: Component
    gateway: Component  # the first gateway
    env: dict[str, str]
    mcp_url: str  # the first gateway's
    backend_url: str
    extra: list[Component] = field(default_factory=list)
    gateways: list[Component] = field(default_factory=list)  # all of them, in port order
    mcp_urls: list[str] = field(default_factory=list)
    redis: RedisServer | None = None

    def __post_init__(self) -> None:
        self.gateways = self.gateways or [self.gateway]
        self.mcp_urls = self.mcp_urls or [self.mcp_url]

    @property
    def components(self) -> list[Component]:
        return [self.backend, *self.gateways, *self.extra]


def stack_env(pair: PgPair, backend_port: int, jwt_secret: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": pair.database_url,
        "READ_DATABASE_URL": pair.read_database_url,
        "FASTAPI_BASE_URL": f"http://127.0.0.1:{backend_port}",
        "JWT_SECRET": jwt_secret,
        "MCP_TRANSPORT": "http",
        "MCP_HOST": "127.0.0.1",
    }
    if pair.replicas > 1:
        env["READ_DATABASE_URLS"] = ",".join(pair.read_database_urls)
    return env


@contextmanager
def running_stack(
    root: Path,
    mcp_port: int | None = None,
    backend_port: int | None = None,
    extra_env: dict[str, str] | None = None,
    *,
    replicas: int = 1,
    gateways: int = 1,
    log_dir: Path | None = None,
    app: UserApp | None = None,
) -> Iterator[Stack]:
    """Everything `taskgate dev` runs, stopped in reverse order on exit.

    Gateways listen on mcp_port, mcp_port+1, ... (free ports when mcp_port is None). Several
    gateways share one Redis, started here. With log_dir, each process logs to a file there.
    With `app`, the user's app (taskgate.app_stack) takes the task service backend's place.
    """
    backend_port = backend_port or free_port()
    ports = (
        [mcp_port + i for i in range(gateways)]
        if mcp_port
        else [free_port() for _ in range(gateways)]
    )
    with ExitStack() as stack:
        say(f"starting PostgreSQL: a primary and {replicas} streaming replica(s) in {root}")
        pair = PgPair(root, replicas=replicas)
        stack.callback(pair.stop)
        pair.start()
        replica_ports = ", ".join(str(port) for port in pair.replica_ports)
        say(f"primary on 127.0.0.1:{pair.primary_port}, replica(s) on {replica_ports}")
        if app is None:
            say("migrating the primary")
            upgrade_to_head(pair.database_url)
        else:
            say(f"creating the schema of {app.spec.name}")
            create_app_schema(app.spec, pair.database_url, READER_ROLE)
        urls = [f"http://127.0.0.1:{port}/mcp" for port in ports]
        env = {
            **stack_env(pair, backend_port, secrets.token_urlsafe(32)),
            # The token audience, for the backend that issues tokens and the gateways that check
            # them. Several gateways are one service scaled out (as behind a load balancer), so
            # they share the first one's URL, and one demo token serves them all.
            "MCP_PUBLIC_URL": urls[0],
            **(extra_env or {}),
        }
        if app is not None:
            env.update(app.env, TASKGATE_APP=app.reference)
        redis = None
        if gateways > 1:
            redis = RedisServer(root, logfile=log_dir / "redis.log" if log_dir else None)
            redis.start()
            stack.callback(redis.stop)
            env["CACHE_URL"] = redis.url
            say(f"Redis for the {gateways} gateways on 127.0.0.1:{redis.port}")
        backend_url = f"http://127.0.0.1:{backend_port}"
        say(f"starting the backend on {backend_url} and {gateways} gateway(s)")
        # All start at once: each takes about a second to import.
        backend_log = log_dir / "backend.log" if log_dir else None
        if app is None:
            backend = spawn_component(
                "backend",
                ["backend", "--port", str(backend_port)],
                env,
                f"{backend_url}/healthz",
                backend_log,
            )
        else:
            backend = spawn_process(
                app.spec.name,
                app.command(backend_port),
                env,
                f"{backend_url}{app.spec.health_path}",
                backend_log,
            )
            backend.hint = (
                f" (the spec's health_path, {app.spec.health_path!r}: give the app that GET "
                "route, or name one it has)"
            )
        stack.callback(backend.stop)
        started: list[Component] = []
        for port in ports:
            name = "gateway" if gateways == 1 else f"gateway-{port}"
            gateway = spawn_component(
                name,
                ["gateway", "--transport", "http", "--port", str(port)],
                env,
                f"http://127.0.0.1:{port}/healthz",
                log_dir / f"{name}.log" if log_dir else None,
            )
            stack.callback(gateway.stop)
            started.append(gateway)
        for component in (backend, *started):
            wait_healthy(component)
        yield Stack(
            pair,
            backend,
            started[0],
            env,
            urls[0],
            backend_url,
            gateways=started,
            mcp_urls=urls,
            redis=redis,
        )


def demo_token(backend_url: str, password: str, resource: str | None = None) -> str:
    """Sign the demo user up (once per database) and log in; returns the bearer token."""
    form = {"username": DEMO_EMAIL, "password": password}
    if resource:
        form["resource"] = resource  # RFC 8707: a token for this gateway, where supported
    with httpx.Client(base_url=backend_url, timeout=10) as http:
        http.post(f"{API_PREFIX}/users", json={"email": DEMO_EMAIL, "password": password})
        reply = http.post(LOGIN_PATH, data=form)
        reply.raise_for_status()
        token: str = reply.json()["access_token"]
        return token
