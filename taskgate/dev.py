"""`taskgate dev`: check the ports, start the stack, write `.taskgate/dev.env`, print the banner.

Progress goes to stderr while things start; each component logs to a file under `.taskgate/`;
the banner comes once everything answers, so no log line runs into it.
"""

from __future__ import annotations

import errno
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from shared.spec_loader import SpecLoadError
from taskgate.app_schema import SchemaError
from taskgate.app_stack import DEMO_USER_ID, AppStartError, UserApp, load_user_app
from taskgate.devenv import (
    ADMIN_URL_KEY,
    DevFolderLock,
    StackRunning,
    dev_dir,
    dev_env_path,
    write_dev_env,
)
from taskgate.devstack import DEMO_EMAIL, Stack, demo_token, running_stack, say
from taskgate.pgpair import SUPERUSER, PgPairError
from taskgate.redis_server import RedisServerError, redis_server_binary

EXIT_USAGE = 2  # what argparse exits with for a bad command line
# The printed token outlives a working day, so a pasted token does not die mid-session; OAuth
# clients refresh theirs instead.
DEV_TOKEN_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class DevOptions:
    mcp_port: int
    backend_port: int
    replicas: int = 1
    gateways: int = 1
    app: str | None = None  # --app module:attribute; the task service when None

    @property
    def mcp_ports(self) -> list[int]:
        return [self.mcp_port + i for i in range(self.gateways)]

    @property
    def mcp_url(self) -> str:
        return f"http://127.0.0.1:{self.mcp_port}/mcp"


class PortBusy(Exception):
    """A port dev needs is taken; the message names it and the flag that changes it."""


def _in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: a port left in TIME_WAIT is free, one that something listens on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def check_ports(options: DevOptions) -> None:
    """Raise PortBusy for the first port that dev cannot listen on, before anything starts."""
    gateways = options.mcp_ports
    if gateways[-1] > 65535:
        raise PortBusy(
            f"--mcp-port {options.mcp_port} with --gateways {options.gateways} runs past port "
            "65535; choose a lower --mcp-port"
        )
    if options.backend_port in gateways:
        raise PortBusy(
            f"port {options.backend_port} is both the backend's and a gateway's; choose "
            "another with --backend-port or --mcp-port"
        )
    wanted = [(port, "--mcp-port", "a gateway") for port in gateways]
    wanted.append((options.backend_port, "--backend-port", "the backend"))
    for port, flag, who in wanted:
        if _in_use(port):
            raise PortBusy(
                f"port {port} (for {who}) is in use on 127.0.0.1; choose another with {flag}"
            )


@dataclass(frozen=True)
class DevToken:
    token: str
    expires_at: int  # Unix time

    @classmethod
    def of(cls, token: str) -> DevToken:
        """A token dev signed itself (for a user's app), with its expiry."""
        import jwt

        claims = jwt.decode(token, options={"verify_signature": False})
        return cls(token, int(claims["exp"]))

    @property
    def expires(self) -> str:
        return datetime.fromtimestamp(self.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def long_lived_demo_token(stack: Stack, password: str) -> DevToken:
    """The demo user's gateway token, for DEV_TOKEN_TTL_SECONDS rather than JWT_TTL_SECONDS.

    The backend logs the demo user in (so the password is known to work) and issues a token for
    the gateways; dev, which chose JWT_SECRET, signs the same claims with a longer expiry.
    """
    from shared.settings import Settings
    from shared.tokens import issue_gateway_token, verify_gateway_token

    settings = Settings(jwt_secret=stack.env["JWT_SECRET"], mcp_public_url=stack.mcp_url)
    issued = demo_token(stack.backend_url, password, resource=stack.mcp_url)
    user_id = verify_gateway_token(settings, issued).user_id
    token = issue_gateway_token(settings, user_id, DEV_TOKEN_TTL_SECONDS)
    claims = verify_gateway_token(settings, token)
    return DevToken(token, claims.expires_at)


def dev_settings(
    stack: Stack, token: DevToken, password: str | None, app_secrets: Mapping[str, str]
) -> dict[str, str]:
    """What .taskgate/dev.env holds: every value a person or a client needs, in a stable order.
    No password: a user's app (--app), whose accounts are its own, has no demo account. The
    secrets dev made up for the app's spec are there too, to sign the app's own tokens."""
    values: dict[str, str] = {}
    for index, url in enumerate(stack.mcp_urls, start=1):
        values["MCP_URL" if index == 1 else f"MCP_URL_{index}"] = url
    values[ADMIN_URL_KEY] = stack.mcp_url.removesuffix("/mcp")
    values.update(MCP_TOKEN=token.token, MCP_TOKEN_EXPIRES_AT=token.expires)
    if password is not None:
        values.update(DEMO_EMAIL=DEMO_EMAIL, DEMO_PASSWORD=password)
    values.update(
        FASTAPI_BASE_URL=stack.env["FASTAPI_BASE_URL"],
        DATABASE_URL=stack.env["DATABASE_URL"],
        READ_DATABASE_URL=stack.env["READ_DATABASE_URL"],
    )
    if "READ_DATABASE_URLS" in stack.env:
        values["READ_DATABASE_URLS"] = stack.env["READ_DATABASE_URLS"]
    pair = stack.pair
    values.update(
        JWT_SECRET=stack.env["JWT_SECRET"],
        ADMIN_TOKEN=stack.env["ADMIN_TOKEN"],
        **app_secrets,
        CACHE_URL=stack.env.get("CACHE_URL", "memory://"),
        # libpq URLs, for psql: local debugging only.
        PRIMARY_SUPERUSER_URL=pair.url(SUPERUSER, driver="postgresql"),
        REPLICA_SUPERUSER_URLS=",".join(
            pair.url(SUPERUSER, replica=i, driver="postgresql") for i in range(pair.replicas)
        ),
    )
    return values


DEMO_LOGIN_LINE = (
    f"Demo login: {DEMO_EMAIL} with DEMO_PASSWORD from the settings file (OAuth login page)"
)


# A user's app (--app) has its own accounts, and no OAuth server of taskgate's.
APP_USER_LINE = (
    "Token user: id 1 of your app, which dev does not create: sign a user up through your app "
    "first (FASTAPI_BASE_URL in the settings file)"
)


def app_user_line(app: UserApp) -> str:
    """What the banner says of the token's user, whom dev does not create."""
    if app.demo_user == DEMO_USER_ID:
        return APP_USER_LINE
    return (
        f"Token user: id {app.demo_user} of your app, which dev does not create: its user ids "
        "are UUIDs, so create that user in your app, or sign a token for your own user with the "
        "app's secret from the settings file"
    )


def banner(
    stack: Stack, token: DevToken, settings_file: Path, seconds: float, app: UserApp | None = None
) -> str:
    """`app`: a user's app (--app), which has its own accounts, and no OAuth server of
    taskgate's; None: the task service, with its demo login."""
    demo_login = app is None
    logs = [c.log for c in stack.components if c.log is not None]
    if stack.redis is not None and stack.redis.logfile is not None:
        logs.append(stack.redis.logfile)
    lines = [
        "",
        f"taskgate dev is ready ({seconds:.1f}s): {len(stack.mcp_urls)} gateway(s), "
        f"{stack.pair.replicas} replica(s)",
        *(f"MCP endpoint: {url}" for url in stack.mcp_urls),
        f"Bearer token: {token.token}",
        f"Token lifetime: {round((token.expires_at - time.time()) / 3600)}h, until "
        f"{token.expires} (MCP_TOKEN_EXPIRES_AT); then restart dev"
        + (", or use OAuth, which refreshes" if demo_login else ""),
        DEMO_LOGIN_LINE if app is None else app_user_line(app),
        f"Settings file: {settings_file}",
        *(f"Log: {path}" for path in logs),
        "Admin CLI: taskgate cache show   (run it as you ran dev; it reads the settings file)",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_dev(options: DevOptions) -> int:
    lock = DevFolderLock(dev_dir())
    try:
        return _run_dev_locked(options, lock)
    finally:
        lock.release()


def _run_dev_locked(options: DevOptions, lock: DevFolderLock) -> int:
    try:
        # A folder with no .taskgate/ runs no stack: the ports are checked before it is made.
        if lock.folder.exists():
            lock.acquire(options.mcp_url)
        check_ports(options)
        if options.gateways > 1:
            redis_server_binary()  # found before anything starts, like the ports
        lock.acquire(options.mcp_url)
    except (StackRunning, PortBusy, RedisServerError) as exc:
        print(f"taskgate dev: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        app = load_user_app(options.app) if options.app else None
    except (SpecLoadError, AppStartError) as exc:
        print(f"taskgate dev: {exc}", file=sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    # Ctrl-C must work even when a parent shell started us with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    # Owner only: the settings file and the logs name local passwords and tokens.
    dev_dir().mkdir(mode=0o700, exist_ok=True)
    logs = dev_dir() / "logs"
    logs.mkdir(mode=0o700, exist_ok=True)
    # Ours to write and remove while we hold the lock. One left by a killed run names servers
    # that are gone: never leave it for a client to use.
    settings_file = dev_env_path()
    settings_file.unlink(missing_ok=True)
    root = Path(tempfile.mkdtemp(prefix="taskgate-dev-"))
    admin_token = secrets.token_urlsafe(32)
    try:
        with running_stack(
            root,
            mcp_port=options.mcp_port,
            backend_port=options.backend_port,
            extra_env={"ADMIN_TOKEN": admin_token},
            replicas=options.replicas,
            gateways=options.gateways,
            log_dir=logs,
            app=app,
        ) as stack:
            password: str | None
            if app is None:
                password = secrets.token_urlsafe(16)
                token = long_lived_demo_token(stack, password)
            else:  # the app's own accounts: no demo account, a token for its demo user
                password = None
                token = DevToken.of(app.token(stack.env["JWT_SECRET"], stack.mcp_url))
            app_secrets = {} if app is None else app.env
            write_dev_env(settings_file, dev_settings(stack, token, password, app_secrets))
            elapsed = time.monotonic() - started
            print(banner(stack, token, settings_file, elapsed, app), flush=True)
            return _watch(stack)
    except KeyboardInterrupt:
        say("stopping")
        return 0
    except (PgPairError, RedisServerError, SchemaError, RuntimeError, OSError) as exc:
        say(f"error: {exc}")
        return 1
    finally:
        settings_file.unlink(missing_ok=True)
        shutil.rmtree(root, ignore_errors=True)
        say("stopped")


def _watch(stack: Stack) -> int:
    """Until Ctrl-C: a component that exits ends dev, naming its log."""
    while True:
        for component in stack.components:
            if component.process.poll() is not None:
                say(
                    f"{component.name} exited with code {component.process.returncode}; "
                    f"its log: {component.log}"
                )
                return 1
        time.sleep(0.5)
