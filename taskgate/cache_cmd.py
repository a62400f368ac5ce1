"""`taskgate cache show | set-ttl | flush`: the gateway's admin API from the command line.

The token comes from ADMIN_TOKEN (environment or .env), never from an argument, because
arguments show up in process lists and shell history.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

import httpx

from shared.settings import READ_TOOLS, Settings


def admin_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.mcp_host in ("0.0.0.0", "::", "") else settings.mcp_host
    return os.environ.get("TASKGATE_ADMIN_URL") or f"http://{host}:{settings.mcp_port}"


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    if args.action == "show":
        return "GET", "/admin/cache", None
    if args.action == "flush":
        return "POST", "/admin/cache/flush", None
    ttl = None if args.unset else args.seconds
    return "PUT", "/admin/cache/ttl", {"ttl": ttl, "tool": args.tool, "flush": args.flush}


def run_cache_command(args: argparse.Namespace) -> int:
    settings = Settings()
    if settings.admin_token is None:
        print("taskgate: set ADMIN_TOKEN to the gateway's admin token", file=sys.stderr)
        return 2
    method, path, body = _request(args)
    headers = {
        "Authorization": f"Bearer {settings.admin_token.get_secret_value()}",
        "X-Admin-Actor": args.actor,
    }
    url = (args.url or admin_url(settings)).rstrip("/")
    try:
        reply = httpx.request(method, url + path, json=body, headers=headers, timeout=10)
    except httpx.TransportError as exc:
        print(
            f"taskgate: cannot reach the gateway at {url} ({type(exc).__name__})", file=sys.stderr
        )
        return 1
    try:
        payload = reply.json()
    except ValueError:
        payload = {"status": reply.status_code, "body": reply.text[:500]}
    out = sys.stdout if reply.is_success else sys.stderr
    print(json.dumps(payload, indent=2, sort_keys=True), file=out)
    return 0 if reply.is_success else 1


def add_cache_parser(sub: Any) -> argparse.ArgumentParser:
    cache: argparse.ArgumentParser = sub.add_parser(
        "cache", help="show or tune a running gateway's read cache"
    )
    cache.add_argument(
        "--url", help="the gateway (default TASKGATE_ADMIN_URL or MCP_HOST:MCP_PORT)"
    )
    cache.add_argument("--actor", default=_who(), help="who is making the change, for the log")
    actions = cache.add_subparsers(dest="action", required=True)
    actions.add_parser("show", help="TTLs, hit ratio and read counters")
    set_ttl = actions.add_parser("set-ttl", help="set the global TTL, or one tool's")
    set_ttl.add_argument("seconds", type=float, nargs="?", help="seconds; 0 turns caching off")
    set_ttl.add_argument("--tool", choices=READ_TOOLS, help="only this read tool")
    set_ttl.add_argument("--unset", action="store_true", help="drop the tool's own TTL")
    set_ttl.add_argument("--flush", action="store_true", help="also drop entries cached so far")
    actions.add_parser("flush", help="drop every cached read")
    return cache


def check_cache_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.action != "set-ttl":
        return
    if args.unset and (args.tool is None or args.seconds is not None):
        parser.error("set-ttl --unset takes --tool and no seconds")
    if not args.unset and args.seconds is None:
        parser.error("set-ttl needs a number of seconds")


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
