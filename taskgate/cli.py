"""The `taskgate` command: one subcommand per process, and `dev` for the whole system."""

from __future__ import annotations

import argparse
import sys

from shared.logs import configure_logging
from shared.settings import InsecureSettings, Settings
from taskgate.cache_cmd import add_cache_parser, check_cache_args, run_cache_command


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

    settings = _production_settings()
    configure_logging(settings.log_level, settings.log_json)
    port = args.port if args.port is not None else settings.backend_port
    uvicorn.run(
        create_app(settings),
        host=args.host or settings.backend_host,
        port=port,
        log_config=None,
        access_log=False,
        # uvicorn believes X-Forwarded-For from loopback by default; login limits key on the
        # client address, so only configured proxies may name it.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
    )


def _gateway(args: argparse.Namespace) -> None:
    overrides = {"mcp_transport": args.transport} if args.transport else {}
    if args.port is not None:
        overrides["mcp_port"] = args.port
    settings = _production_settings(**overrides)
    configure_logging(settings.log_level, settings.log_json)
    from gateway.server import build_http_app, build_server

    if settings.mcp_transport == "stdio":
        server, _ = build_server(settings)
        server.run("stdio")
        return
    import uvicorn

    uvicorn.run(
        build_http_app(settings),
        host=settings.mcp_host,
        port=settings.mcp_port,
        log_config=None,
        access_log=False,
    )


def _migrate(_: argparse.Namespace) -> None:
    from shared.migrate import upgrade_to_head

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    upgrade_to_head(settings.database_url)
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
    from taskgate.devstack import run_dev

    sys.exit(run_dev(mcp_port=args.mcp_port, backend_port=args.backend_port))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="taskgate",
        description="Hybrid CQRS gateway: MCP tools over a FastAPI backend "
        "(writes) and a cached PostgreSQL replica (reads).",
    )
    sub = root.add_subparsers(dest="command", required=True)

    dev = sub.add_parser(
        "dev", help="run the whole system locally: primary, replica, backend, gateway"
    )
    dev.add_argument("--mcp-port", type=int, default=8001)
    dev.add_argument("--backend-port", type=int, default=8000)
    dev.set_defaults(func=_dev)

    backend = sub.add_parser("backend", help="run the FastAPI backend (DATABASE_URL)")
    backend.add_argument("--host")
    backend.add_argument("--port", type=int)
    backend.set_defaults(func=_backend)

    gateway = sub.add_parser("gateway", help="run the MCP gateway")
    gateway.add_argument("--transport", choices=["stdio", "http"])
    gateway.add_argument("--port", type=int)
    gateway.set_defaults(func=_gateway)

    migrate = sub.add_parser("migrate", help="migrate DATABASE_URL to the latest schema")
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
