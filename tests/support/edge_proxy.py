"""The shipped edge proxy (deploy/nginx/taskgate.conf.template), run with Debian's nginx in front
of a test server, rendered as the nginx image renders it (envsubst of the variables given)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from taskgate.pgpair import free_port

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "nginx" / "taskgate.conf.template"
MAIN = ROOT / "deploy" / "nginx" / "nginx.conf"  # its connection bounds are used here as shipped
START_SECONDS = 10.0


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/bin")
    if not found:
        raise RuntimeError("nginx is not installed (Debian: apt-get install nginx-light)")
    return found


def connection_bounds() -> str:
    """The shipped nginx.conf's worker_rlimit_nofile and events block."""
    text = MAIN.read_text()
    rlimit = re.search(r"^worker_rlimit_nofile \d+;", text, re.MULTILINE)
    events = re.search(r"^events \{[^}]*\}", text, re.MULTILINE)
    assert rlimit and events, "deploy/nginx/nginx.conf: no worker_rlimit_nofile or events block"
    return f"{rlimit.group(0)} {events.group(0)}"


def render(variables: dict[str, str]) -> str:
    """envsubst as the nginx image runs it: only the variables given are replaced."""
    return re.sub(
        r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), m.group(0)), TEMPLATE.read_text()
    )


@contextmanager
def running_edge_proxy(upstream: str, real_ip_from: str = "192.0.2.1") -> Iterator[str]:
    """nginx with the shipped server block in front of `upstream` (host:port); yields its URL."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="taskgate-nginx-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (root / name).mkdir(mode=0o777)
            os.chmod(root / name, 0o777)  # nginx's workers may run as another user
        variables = {"PROXY_PORT": f"127.0.0.1:{port}", "PROXY_UPSTREAM": upstream}
        (root / "taskgate.conf").write_text(render({**variables, "REAL_IP_FROM": real_ip_from}))
        temp_paths = "".join(
            f"{kind}_temp_path {root / name};"
            for kind, name in (
                ("client_body", "body"),
                ("proxy", "proxy"),
                ("fastcgi", "fastcgi"),
                ("uwsgi", "uwsgi"),
                ("scgi", "scgi"),
            )
        )
        (root / "nginx.conf").write_text(
            f"daemon off; worker_processes 1; pid {root / 'nginx.pid'};"
            f"error_log {root / 'error.log'} warn;"
            f"{connection_bounds()}"
            f"http {{ access_log off; {temp_paths} include {root / 'taskgate.conf'}; }}"
        )
        process = subprocess.Popen(
            [nginx_binary(), "-p", str(root), "-c", str(root / "nginx.conf")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_listening(process, port)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(10)


def _wait_listening(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"nginx exited while starting: {stderr}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen on {port} within {START_SECONDS:.0f}s")
