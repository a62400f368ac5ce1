"""The `taskgate` command: one subcommand per process, and `dev` for the whole system."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from shared.logs import configure_logging
from shared.settings import InsecureSettings, Settings
from taskgate.cache_cmd import add_cache_parser, check_cache_args, run_cache_command
from taskgate.command_errors import (
    EXIT_SETTINGS,
    SettingError,
    check_database_urls,
    check_http_url,
    database_failure,
    load_settings,
)

EXAMPLES = """examples:
  taskgate dev                                   # the whole system on this machine
  taskgate dev --replicas 2 --gateways 2         # two replicas, two gateways sharing a Redis
  taskgate dev --mcp-port 9001 --backend-port 9000
  taskgate cache show                            # against dev: reads .taskgate/dev.env
  taskgate gateway --transport stdio             # one process, configured from the environment

Run `taskgate COMMAND --help` for a command's options.
"""


def _production_settings(**overrides: object) -> Settings:
    """Settings for a server process: one clear line and exit 2 on a missing or weak secret."""
    settings = load_settings(**overrides)
    try:
        settings.require_production_secrets()
    except InsecureSettings as refused:
        print(f"taskgate: refusing to start: {refused}", file=sys.stderr)
        sys.exit(EXIT_SETTINGS)
    return settings


def _backend(args: argparse.Namespace) -> None:
    from backend.app import create_app
    from taskgate.serving import serve

    settings = _production_settings(**({"backend_host": args.host} if args.host else {}))
    check_database_urls([("DATABASE_URL", settings.database_url)])
    configure_logging(settings.log_level, settings.log_json)
    port = args.port if args.port is not None else settings.backend_port
    # No new-connection rate: the backend's clients are its gateways, whose pools open new
    # connections faster than any per-address rate under write load (64 sessions: refused
    # connections, failed writes), and the edge proxy, which is trusted anyway.
    serve(create_app(settings), settings, settings.backend_host, port, rate_new_connections=False)


def _gateway(args: argparse.Namespace) -> None:
    overrides: dict[str, object] = {"mcp_transport": args.transport} if args.transport else {}
    if args.port is not None:
        overrides["mcp_port"] = args.port
    if args.app is not None:
        overrides["taskgate_app"] = args.app
    settings = _production_settings(**overrides)
    check_database_urls(
        [
            ("READ_DATABASE_URL", settings.read_database_url),
            *(("READ_DATABASE_URLS", url) for url in settings.read_database_urls),
            ("READ_FALLBACK_DATABASE_URL", settings.read_fallback_database_url),
        ]
    )
    configure_logging(settings.log_level, settings.log_json)
    from gateway.served_app import AppSpecInvalid, load_served_app
    from gateway.server import build_http_app, build_server

    try:
        served = load_served_app(settings)
    except AppSpecInvalid as exc:
        print(f"taskgate gateway: {exc}", file=sys.stderr)
        sys.exit(2)
    if settings.mcp_transport == "stdio":
        server, _ = build_server(settings, served)
        server.run("stdio")
        return
    from taskgate.serving import serve

    serve(build_http_app(settings, served), settings, settings.mcp_host, settings.mcp_port)


def _migrate(args: argparse.Namespace) -> None:
    from shared.migrate import upgrade_when_ready

    settings = load_settings()
    check_database_urls([("DATABASE_URL", settings.database_url)])
    configure_logging(settings.log_level, settings.log_json)
    try:
        upgrade_when_ready(settings.database_url, args.wait)
    except Exception as failure:
        explained = database_failure("DATABASE_URL", settings.database_url, failure)
        if explained is None:
            raise
        raise explained from None
    print("database is at the latest migration", file=sys.stderr)


def _cache(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    check_cache_args(parser, args)
    sys.exit(run_cache_command(args))


def _connect(args: argparse.Namespace) -> None:
    from pathlib import Path

    from taskgate.connect import run_connect, run_login

    settings = load_settings()
    if args.url is not None:
        check_http_url("URL", args.url)
    # Logs go to stderr only: stdout carries the MCP messages.
    configure_logging("WARNING", settings.log_json)
    if args.login:
        sys.exit(run_login(args.url, settings, Path.cwd(), args.callback_port or 0))
    if args.callback_port is not None:
        raise SettingError("--callback-port: only with --login, which is when a browser calls it")
    sys.exit(run_connect(args.url, settings, Path.cwd()))


def _dev(args: argparse.Namespace) -> None:
    from taskgate.dev import DevOptions, run_dev

    load_settings()  # the processes it starts inherit the environment: a bad value stops here

    options = DevOptions(
        args.mcp_port, args.backend_port, args.replicas, args.gateways, app=args.app
    )
    sys.exit(run_dev(options))


def _version() -> str:
    try:
        return version("taskgate")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _port(value: str) -> int:
    port = int(value)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (1-65535)")
    return port


def _count(value: str) -> int:
    count = int(value)
    if not 1 <= count <= 16:
        raise argparse.ArgumentTypeError(f"{value}: give 1 to 16")
    return count


@dataclass(frozen=True)
class CommandHelp:
    summary: str  # one line, in `taskgate --help`
    description: str
    reads: str  # the settings it reads
    examples: str

    def epilog(self) -> str:
        return f"reads:\n{self.reads}\n\nexamples:\n{self.examples}"


DEV = CommandHelp(
    "run the whole system locally: primary, replicas, backend, gateways",
    "Run the whole system on this machine: a PostgreSQL primary and streaming replicas (in a "
    "temporary folder), the backend and the gateways. Writes every setting a client needs to "
    ".taskgate/dev.env, logs to .taskgate/logs/, and stops everything on Ctrl-C. One stack runs "
    "per folder.",
    "  no settings: it chooses the ports, URLs and secrets and writes them to .taskgate/dev.env;\n"
    "  the processes it starts inherit the environment, so a bad value there stops it at once.\n"
    "  --gateways above 1 needs redis-server on PATH; TASKGATE_APP names an app spec (--app).",
    "  taskgate dev\n"
    "  taskgate dev --replicas 2 --gateways 2         # two gateways sharing a Redis\n"
    "  taskgate dev --app notes_spec:SPEC             # your own FastAPI app\n"
    "  taskgate dev --mcp-port 9001 --backend-port 9000",
)
BACKEND = CommandHelp(
    "run the FastAPI backend (writes, logins, OAuth) on DATABASE_URL",
    "Run the FastAPI backend: the REST API, the OAuth authorization server and the login page, "
    "writing to the PostgreSQL primary.",
    "  DATABASE_URL (postgresql+asyncpg://...), JWT_SECRET (32+ characters), MCP_PUBLIC_URL and\n"
    "  MCP_PUBLIC_URLS (the gateways it issues tokens for), BACKEND_PUBLIC_URL, BACKEND_HOST,\n"
    "  BACKEND_PORT, ADMIN_TOKEN, LOGIN_*, PASSWORD_HASH_*, TRUSTED_PROXIES, LOG_*;\n"
    "  every setting: docs/configuration.md",
    "  JWT_SECRET=$(openssl rand -hex 32) \\\n"
    "  DATABASE_URL=postgresql+asyncpg://taskgate:PASSWORD@db:5432/taskgate \\\n"
    "    taskgate backend --host 0.0.0.0 --port 8000",
)
GATEWAY = CommandHelp(
    "run the MCP gateway (streamable HTTP, or stdio)",
    "Run the MCP gateway: write tools forwarded to the backend, read tools answered from the "
    "replicas through the cache.",
    "  READ_DATABASE_URL or READ_DATABASE_URLS (the replicas), FASTAPI_BASE_URL, JWT_SECRET,\n"
    "  MCP_HOST, MCP_PORT, MCP_PUBLIC_URL, CACHE_TTL, CACHE_URL, ADMIN_TOKEN, METRICS_PORT,\n"
    "  TASKGATE_APP (an app spec; unset: the task service);\n"
    "  over stdio also GATEWAY_TOKEN, or GATEWAY_EMAIL and GATEWAY_PASSWORD;\n"
    "  every setting: docs/configuration.md",
    "  taskgate gateway --port 8001\n"
    "  taskgate gateway --app notes_spec:SPEC        # your own FastAPI app\n"
    "  GATEWAY_EMAIL=me@example.com GATEWAY_PASSWORD=... taskgate gateway --transport stdio",
)
MIGRATE = CommandHelp(
    "migrate DATABASE_URL to the latest schema",
    "Apply the Alembic migrations to the primary.",
    "  DATABASE_URL (postgresql+asyncpg://user:password@host:5432/database)",
    "  taskgate migrate\n"
    "  taskgate migrate --wait 120                  # while the database is still starting",
)
CONNECT = CommandHelp(
    "stdio MCP bridge to a running gateway (for Claude Desktop); --login logs in ahead",
    "Relay MCP messages between stdio and a running gateway over streamable HTTP. It needs no "
    "database and no JWT_SECRET: only the gateway's URL and a token.",
    "  MCP_TOKEN (a bearer token; else the tokens stored by --login), CONNECT_TOKENS_FILE\n"
    "  (default ~/.config/taskgate/tokens.json); with no URL, MCP_URL and MCP_TOKEN from\n"
    "  .taskgate/dev.env in this folder",
    "  taskgate connect --login http://127.0.0.1:8001/mcp    # once: stores the tokens\n"
    "  taskgate connect http://127.0.0.1:8001/mcp            # the relay, for a client\n"
    "  taskgate connect                                      # against dev in this folder\n"
    "  # headless, over SSH: ssh -L 8765:127.0.0.1:8765 server, then on the server\n"
    "  taskgate connect --login --callback-port 8765 https://gateway.example.com/mcp",
)


def _command(sub: Any, name: str, text: CommandHelp) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = sub.add_parser(
        name,
        help=text.summary,
        description=text.description,
        epilog=text.epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return command


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="taskgate",
        description="Hybrid CQRS gateway: MCP tools over a FastAPI backend "
        "(writes) and a cached PostgreSQL replica (reads).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    root.add_argument("--version", action="version", version=f"taskgate {_version()}")
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = _command(sub, "dev", DEV)
    dev.add_argument(
        "--mcp-port", type=_port, default=8001, help="the first gateway's port (default 8001)"
    )
    dev.add_argument(
        "--backend-port", type=_port, default=8000, help="the backend's port (default 8000)"
    )
    dev.add_argument(
        "--replicas", type=_count, default=1, help="streaming replicas to start (default 1)"
    )
    dev.add_argument(
        "--gateways",
        type=_count,
        default=1,
        help="gateways on --mcp-port, +1, ...; more than one share a Redis (default 1)",
    )
    dev.add_argument(
        "--app",
        metavar="MODULE:ATTRIBUTE",
        default=os.environ.get("TASKGATE_APP") or None,
        help="serve your own FastAPI app, described by this app spec (default: the task service)",
    )
    dev.set_defaults(func=_dev)

    backend = _command(sub, "backend", BACKEND)
    backend.add_argument("--host", help="the address to listen on (default: BACKEND_HOST)")
    backend.add_argument("--port", type=int, help="the port (default: BACKEND_PORT, 8000)")
    backend.set_defaults(func=_backend)

    gateway = _command(sub, "gateway", GATEWAY)
    gateway.add_argument(
        "--transport",
        choices=["stdio", "http"],
        help="streamable HTTP or stdio (default: MCP_TRANSPORT, http)",
    )
    gateway.add_argument("--port", type=int, help="the HTTP port (default: MCP_PORT, 8001)")
    gateway.add_argument(
        "--app",
        metavar="MODULE:ATTRIBUTE",
        help="the app spec to serve (default: TASKGATE_APP; unset: the task service)",
    )
    gateway.set_defaults(func=_gateway)

    migrate = _command(sub, "migrate", MIGRATE)
    migrate.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="retry this long while the database cannot be reached (default 0)",
    )
    migrate.set_defaults(func=_migrate)

    connect = _command(sub, "connect", CONNECT)
    connect.add_argument(
        "url", nargs="?", help="the gateway's MCP URL (default: MCP_URL in .taskgate/dev.env)"
    )
    connect.add_argument(
        "--login",
        action="store_true",
        help="log in now: print the login URL, wait for the browser, store the tokens, exit",
    )
    connect.add_argument(
        "--callback-port",
        type=_port,
        metavar="PORT",
        help="with --login: the loopback port the browser is sent back to, for an SSH "
        "forward (default: any free port)",
    )
    connect.set_defaults(func=_connect)

    cache = add_cache_parser(sub)
    cache.set_defaults(func=lambda args: _cache(cache, args))
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except SettingError as problem:
        print(f"taskgate {args.command}: {problem}", file=sys.stderr)
        sys.exit(EXIT_SETTINGS)
