"""The `taskgate` command: one subcommand per process, and `dev` for the whole system."""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import PackageNotFoundError, version

from shared.logs import configure_logging
from shared.settings import InsecureSettings, Settings
from taskgate.cache_cmd import add_cache_parser, check_cache_args, run_cache_command

EXAMPLES = """examples:
  taskgate dev                                   # the whole system on this machine
  taskgate dev --replicas 2 --gateways 2         # two replicas, two gateways sharing a Redis
  taskgate dev --mcp-port 9001 --backend-port 9000
  taskgate cache show                            # against dev: reads .taskgate/dev.env
  taskgate gateway --transport stdio             # one process, configured from the environment

Run `taskgate COMMAND --help` for a command's options.
"""


def _proxy_options(settings: Settings) -> dict[str, object]:
    # uvicorn believes X-Forwarded-For from loopback by default, so any local client could name
    # itself; only the proxies an operator lists are believed.
    if not settings.trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": settings.trusted_proxies}


def _production_settings(**overrides: object) -> Settings:
    """Settings for a server process: one clear line and exit 2 on a missing or weak secret."""
    settings = Settings(**overrides)  # type: ignore[arg-type]
    try:
        settings.require_production_secrets()
    except InsecureSettings as refused:
        print(f"taskgate: refusing to start: {refused}", file=sys.stderr)
        sys.exit(2)
    return settings


def _backend(args: argparse.Namespace) -> None:
    import uvicorn

    from backend.app import create_app
    from taskgate.serving import SERVING_LOOP, freeze_startup_heap

    settings = _production_settings()
    configure_logging(settings.log_level, settings.log_json)
    port = args.port if args.port is not None else settings.backend_port
    app = create_app(settings)
    freeze_startup_heap()
    uvicorn.run(
        app,
        host=args.host or settings.backend_host,
        port=port,
        log_config=None,
        access_log=False,
        loop=SERVING_LOOP,
        **_proxy_options(settings),  # type: ignore[arg-type]
    )


def _gateway(args: argparse.Namespace) -> None:
    overrides: dict[str, object] = {"mcp_transport": args.transport} if args.transport else {}
    if args.port is not None:
        overrides["mcp_port"] = args.port
    if args.app is not None:
        overrides["taskgate_app"] = args.app
    settings = _production_settings(**overrides)
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
    import uvicorn

    from taskgate.serving import SERVING_LOOP, freeze_startup_heap

    app = build_http_app(settings, served)
    freeze_startup_heap()
    uvicorn.run(
        app,
        host=settings.mcp_host,
        port=settings.mcp_port,
        log_config=None,
        access_log=False,
        loop=SERVING_LOOP,
        **_proxy_options(settings),  # type: ignore[arg-type]
    )


def _migrate(args: argparse.Namespace) -> None:
    from shared.migrate import upgrade_when_ready

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    upgrade_when_ready(settings.database_url, args.wait)
    print("database is at the latest migration", file=sys.stderr)


def _cache(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    check_cache_args(parser, args)
    sys.exit(run_cache_command(args))


def _connect(args: argparse.Namespace) -> None:
    from pathlib import Path

    from taskgate.connect import run_connect

    settings = Settings()
    # Logs go to stderr only: stdout carries the MCP messages.
    configure_logging("WARNING", settings.log_json)
    sys.exit(run_connect(args.url, settings, Path.cwd()))


def _dev(args: argparse.Namespace) -> None:
    from taskgate.dev import DevOptions, run_dev

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

    dev = sub.add_parser(
        "dev",
        help="run the whole system locally: primary, replicas, backend, gateways",
        description="Run the whole system on this machine: a PostgreSQL primary and streaming "
        "replicas (in a temporary folder), the backend and the gateways. Writes every setting "
        "a client needs to .taskgate/dev.env, logs to .taskgate/logs/, and stops everything "
        "on Ctrl-C.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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

    backend = sub.add_parser("backend", help="run the FastAPI backend (DATABASE_URL)")
    backend.add_argument("--host")
    backend.add_argument("--port", type=int)
    backend.set_defaults(func=_backend)

    gateway = sub.add_parser("gateway", help="run the MCP gateway")
    gateway.add_argument("--transport", choices=["stdio", "http"])
    gateway.add_argument("--port", type=int)
    gateway.add_argument(
        "--app", metavar="MODULE:ATTRIBUTE", help="the app spec to serve (TASKGATE_APP)"
    )
    gateway.set_defaults(func=_gateway)

    migrate = sub.add_parser("migrate", help="migrate DATABASE_URL to the latest schema")
    migrate.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="retry this long while the database cannot be reached (default 0)",
    )
    migrate.set_defaults(func=_migrate)

    connect = sub.add_parser(
        "connect",
        help="stdio MCP bridge to a running gateway (MCP_TOKEN or an OAuth login); "
        "no URL: .taskgate/dev.env",
    )
    connect.add_argument("url", nargs="?", help="the gateway's MCP URL")
    connect.set_defaults(func=_connect)

    cache = add_cache_parser(sub)
    cache.set_defaults(func=lambda args: _cache(cache, args))
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.func(args)
