"""`taskgate cache show | set-ttl | flush`: the gateway's admin API from the command line.

The token comes from ADMIN_TOKEN (environment or .env) or `.taskgate/dev.env`, never from an
argument, because arguments show up in process lists and shell history. When the token in use
is dev.env's, so is the gateway's URL: a shell that sourced dev.env may still export
MCP_HOST:MCP_PORT of another gateway, which must never receive this token.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import httpx

from shared.api import ADMIN_ACTOR_HEADER, ADMIN_CACHE_PATH, ADMIN_FLUSH_PATH, ADMIN_TTL_PATH
from shared.rules import READ_TOOLS
from shared.settings import Settings
from taskgate.command_errors import check_http_url, load_settings
from taskgate.devenv import ADMIN_URL_KEY, dev_admin_url, dev_env_path, read_dev_env


def admin_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.mcp_host in ("0.0.0.0", "::", "") else settings.mcp_host
    exported = os.environ.get(ADMIN_URL_KEY)
    if exported:
        check_http_url(ADMIN_URL_KEY, exported)
        return exported
    return f"http://{host}:{settings.mcp_port}"


@dataclass(frozen=True)
class AdminTarget:
    url: str
    token: str
    from_dev_env: bool = False


def admin_target(url: str | None) -> AdminTarget | None:
    """The gateway and token: `--url`, else dev.env's URL with dev.env's token, else ADMIN_TOKEN
    (environment or .env) with TASKGATE_ADMIN_URL or MCP_HOST:MCP_PORT."""
    settings = load_settings()
    exported = settings.admin_token.get_secret_value() if settings.admin_token else None
    dev = read_dev_env()
    dev_url = dev_admin_url(dev, settings.mcp_path)
    if "ADMIN_TOKEN" in dev and dev_url and exported in (None, dev["ADMIN_TOKEN"]):
        return AdminTarget(url or dev_url, dev["ADMIN_TOKEN"], from_dev_env=True)
    if exported is not None:
        return AdminTarget(url or admin_url(settings), exported)
    return None


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    if args.action == "show":
        return "GET", ADMIN_CACHE_PATH, None
    if args.action == "flush":
        return "POST", ADMIN_FLUSH_PATH, None
    ttl = None if args.unset else args.seconds
    return "PUT", ADMIN_TTL_PATH, {"ttl": ttl, "tool": args.tool, "flush": args.flush}


def run_cache_command(args: argparse.Namespace) -> int:
    if args.url is not None:
        check_http_url("--url", args.url)
    target = admin_target(args.url)
    if target is None:
        print(
            "taskgate: no admin token: set ADMIN_TOKEN (environment or .env) to the gateway's, "
            f"or start `taskgate dev` in this folder (it writes {dev_env_path()})",
            file=sys.stderr,
        )
        return 2
    method, path, body = _request(args)
    headers = {"Authorization": f"Bearer {target.token}"}
    if args.action != "show":
        headers[ADMIN_ACTOR_HEADER] = args.actor
    url = target.url.rstrip("/")
    try:
        reply = httpx.request(method, url + path, json=body, headers=headers, timeout=10)
    except httpx.TransportError as exc:
        hint = "; is `taskgate dev` still running?" if target.from_dev_env else ""
        print(
            f"taskgate: cannot reach the gateway at {url} ({type(exc).__name__}){hint}",
            file=sys.stderr,
        )
        return 1
    try:
        payload = reply.json()
    except ValueError:
        payload = {"status": reply.status_code, "body": reply.text[:500]}
    out = sys.stdout if reply.is_success else sys.stderr
    print(json.dumps(payload, indent=2, sort_keys=True), file=out)
    return 0 if reply.is_success else 1


EXAMPLES = """reads:
  .taskgate/dev.env (written by `taskgate dev` in this folder): its TASKGATE_ADMIN_URL and
  ADMIN_TOKEN together, whatever the shell exports; else ADMIN_TOKEN (environment or .env)
  with --url, TASKGATE_ADMIN_URL, or MCP_HOST:MCP_PORT

examples:
  taskgate cache show                          # TTLs, hit ratio, read counters
  taskgate cache set-ttl 30                    # the global TTL, in seconds
  taskgate cache set-ttl 2 --tool list_tasks   # one read tool's TTL
  taskgate cache set-ttl --tool list_tasks --unset
  taskgate cache set-ttl 1 --flush             # and drop what was cached under the old TTL
  taskgate cache flush
  ADMIN_TOKEN=... taskgate cache show --url http://10.0.0.5:8001
"""


def _connection_options(
    parser: argparse.ArgumentParser, suppress: bool, changes: bool = True
) -> None:
    # Accepted before and after the action; after it they default to "not given", so a value
    # given before the action is kept.
    parser.add_argument(
        "--url",
        default=argparse.SUPPRESS if suppress else None,
        help="the gateway, e.g. http://127.0.0.1:8001 (default: see below)",
    )
    if not changes:
        return  # nothing is changed, so there is no one to name in the gateway's log
    parser.add_argument(
        "--actor",
        default=argparse.SUPPRESS if suppress else _who(),
        help="who is making the change, for the gateway's log (default: your user name)",
    )


def add_cache_parser(sub: Any) -> argparse.ArgumentParser:
    cache: argparse.ArgumentParser = sub.add_parser(
        "cache",
        help="show or tune a running gateway's read cache",
        description="Show or tune a running gateway's read cache through its admin API.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection_options(cache, suppress=False)
    actions = cache.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str, changes: bool = True) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(
            name,
            help=help,
            description=help[0].upper() + help[1:] + ".",
            epilog=EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _connection_options(parser, suppress=True, changes=changes)
        return parser

    action("show", "TTLs, hit ratio and read counters", changes=False)
    set_ttl = action("set-ttl", "set the global TTL, or one tool's")
    set_ttl.add_argument("seconds", type=float, nargs="?", help="seconds; 0 turns caching off")
    set_ttl.add_argument("--tool", choices=READ_TOOLS, help="only this read tool")
    set_ttl.add_argument("--unset", action="store_true", help="drop the tool's own TTL")
    set_ttl.add_argument("--flush", action="store_true", help="also drop entries cached so far")
    action("flush", "drop every cached read")
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
