"""`docs/configuration.md`: every setting of shared/settings.py, its default, bounds and meaning.

Names, defaults and bounds come from the Settings class; the meanings live here, one line each,
grouped for a reader. Regenerate after adding a setting:
`uv run python -m taskgate.configuration_doc > docs/configuration.md` (a test fails, naming the
setting, while a field has no meaning here or the file differs from what this renders).
"""

from __future__ import annotations

from typing import Any

from annotated_types import Ge, Gt, Le
from pydantic.fields import FieldInfo

from taskgate.env_example import setting_value

REGENERATE = "uv run python -m taskgate.configuration_doc > docs/configuration.md"

HEADER = """\
# Configuration

Every taskgate process reads its settings from the environment and from a `.env` file in the
folder it runs in (the environment wins). Names are case-insensitive.
[`.env.example`](../.env.example) lists the same settings with their defaults, ready to copy
to `.env`.

`taskgate dev` sets what it needs itself (ports, URLs, secrets) and writes them to
`.taskgate/dev.env`; see [Getting started](getting-started.md). A bad value stops a command with
one line naming the setting (exit code 2), e.g.
`taskgate migrate: CACHE_TTL: Input should be a valid number, unable to parse string as a
number`.

Lists (`MCP_ALLOWED_HOSTS`, ...) and `CACHE_TTL_OVERRIDES` are JSON (`'["a", "b"]'`,
`'{"list_tasks": 2}'`); `READ_DATABASE_URLS` also takes comma-separated URLs.

This page is generated from `shared/settings.py`: `{regenerate}`.
"""

FOOTER_ROWS = [
    (
        "TASKGATE_ADMIN_URL",
        "`taskgate cache`: the gateway's admin URL when `--url` is not given and `ADMIN_TOKEN` "
        "comes from the environment; `taskgate dev` writes it to `.taskgate/dev.env`",
    ),
    (
        "XDG_CONFIG_HOME",
        "`taskgate connect`: its tokens go to `$XDG_CONFIG_HOME/taskgate/tokens.json` when "
        "`CONNECT_TOKENS_FILE` is unset (default `~/.config`)",
    ),
]

# (section, [(setting, meaning)]) in the order a reader needs them; every Settings field once.
SECTIONS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Databases",
        [
            ("database_url", "the primary (backend, migrations); `postgresql+asyncpg://...`"),
            (
                "read_database_url",
                "the replica for reads (a SELECT-only role), or one pooler or load balancer "
                "in front of several",
            ),
            (
                "read_database_urls",
                "several replicas, comma-separated, each one server; set, it replaces "
                "`READ_DATABASE_URL`",
            ),
            (
                "replica_max_lag_seconds",
                "a replica sampled this far behind twice in a row gets no reads until it "
                "catches up",
            ),
            (
                "replica_retry_max_seconds",
                "a failed replica is retried after 1 s, doubling up to this",
            ),
            (
                "read_fallback_database_url",
                "where reads go when no replica can serve them (the primary, through a "
                "read-only role); empty: answer `replica_unavailable`",
            ),
            ("db_pool_size", "connections each engine keeps open"),
            ("db_max_overflow", "connections each engine may open beyond the pool"),
            ("db_pool_timeout", "seconds the backend waits for a free connection to the primary"),
            (
                "read_pool_timeout",
                "seconds a read waits for a free replica connection before answering "
                "`rate_limited` (overloaded); below `REPLICA_TIMEOUT`",
            ),
            ("db_connect_timeout", "seconds to open a database connection"),
            ("db_statement_timeout_ms", "the server-side statement timeout; 0: none"),
            (
                "replica_timeout",
                "seconds a read may spend connecting to and querying a replica (or the "
                "fallback) before it answers `replica_unavailable`",
            ),
            (
                "ryw_wait_timeout",
                "seconds a read waits for a replica to replay the caller's last write",
            ),
        ],
    ),
    (
        "Gateway to backend",
        [
            (
                "taskgate_app",
                "the app spec the gateway (and `taskgate dev`) serves, as `module:attribute` "
                "(`--app`); unset: the task service ([your own app](your-own-app.md))",
            ),
            ("fastapi_base_url", "the backend, as the gateway reaches it"),
            (
                "backend_public_url",
                "the backend as browsers and MCP clients reach it: the OAuth issuer and the "
                "login page's address (default: `FASTAPI_BASE_URL`)",
            ),
            ("backend_connect_timeout", "seconds, the gateway's pooled client to the backend"),
            ("backend_read_timeout", "seconds, the same client"),
            ("backend_write_timeout", "seconds, the same client"),
            ("backend_pool_timeout", "seconds waiting for a free connection of that pool"),
            ("backend_max_connections", "that pool's size"),
            (
                "backend_keepalive_seconds",
                "seconds an idle connection of that pool stays open (0: one per call)",
            ),
        ],
    ),
    (
        "The MCP server (gateway)",
        [
            ("mcp_transport", "`http` (streamable HTTP) or `stdio`"),
            ("mcp_host", "where the gateway listens"),
            ("mcp_port", "the gateway's port"),
            ("mcp_path", "the MCP endpoint's path"),
            (
                "mcp_public_url",
                "the URL clients use, and the audience of the tokens this gateway accepts "
                "(default `http://MCP_HOST:MCP_PORT/mcp`); set the same value for the backend",
            ),
            (
                "mcp_public_urls",
                "the backend only: further gateways' public URLs (comma-separated) it issues "
                "tokens for",
            ),
            (
                "mcp_stateless",
                "no MCP sessions, so any gateway behind a load balancer answers any request",
            ),
            ("mcp_json_response", "answer with JSON bodies rather than event streams"),
            (
                "mcp_allowed_hosts",
                "`Host` values served (DNS-rebinding protection; `host:*` allows any port); "
                "default: loopback, `MCP_HOST` and the public URL's host",
            ),
            ("mcp_allowed_origins", "`Origin` values served; default as above"),
            (
                "mcp_fast_path",
                "answer cached read tool calls in front of the MCP SDK; `false`: the SDK "
                "answers every request",
            ),
            ("mcp_bench_tools", "adds the no-op `ping` tool the benchmark measures"),
            (
                "auth_mode",
                "`token`, or `user_param`: trusted networks only, no token checked, every "
                "tool takes `user_id`",
            ),
            ("gateway_token", "the stdio gateway's token (for the gateway's audience)"),
            ("gateway_email", "the stdio gateway's login, with `GATEWAY_PASSWORD`"),
            ("gateway_password", "see `GATEWAY_EMAIL`"),
        ],
    ),
    (
        "The stdio bridge (`taskgate connect`)",
        [
            (
                "mcp_token",
                "a bearer token sent to the gateway; unset: the tokens stored by "
                "`taskgate connect --login`",
            ),
            (
                "connect_tokens_file",
                "where the OAuth tokens are kept (default `~/.config/taskgate/tokens.json`)",
            ),
        ],
    ),
    (
        "The backend",
        [
            ("backend_host", "where `taskgate backend` listens (`--host` overrides)"),
            ("backend_port", "its port (`--port` overrides)"),
            ("max_body_bytes", "the largest request body; larger answers 413"),
            (
                "login_account_failures",
                "failed logins allowed per account before back-off",
            ),
            (
                "login_address_failures",
                "failed logins allowed per client address before back-off",
            ),
            ("login_backoff_seconds", "the first back-off, doubling with each failure"),
            ("login_backoff_max_seconds", "the longest back-off"),
            (
                "login_failure_window_seconds",
                "failures are forgotten this long after the last",
            ),
            (
                "login_limit_entries",
                "accounts and addresses tracked, each (about 350 bytes an entry)",
            ),
            ("password_hash_concurrency", "argon2 hashes at once (64 MiB each)"),
            (
                "password_hash_queue",
                "callers allowed to wait for a hash; beyond that, `rate_limited`",
            ),
        ],
    ),
    (
        "Tokens",
        [
            (
                "jwt_secret",
                "signs and verifies tokens (the same in backend and gateway); servers refuse "
                "a placeholder or fewer than 32 characters",
            ),
            ("jwt_issuer", "the `iss` of every token"),
            ("jwt_audience", "the `aud` of backend tokens"),
            ("jwt_ttl_seconds", "lifetime of access tokens"),
            (
                "backend_token_ttl_seconds",
                "lifetime of the backend tokens the gateway gets by token exchange",
            ),
            ("oauth_refresh_ttl_seconds", "lifetime of refresh tokens (rotated on each use)"),
            ("oauth_code_ttl_seconds", "lifetime of authorization codes (single use)"),
            (
                "login_device_cookie_days",
                "a browser that logged in keeps its own login allowance this long (a signed "
                "device cookie), whatever failures its account or address sees elsewhere",
            ),
            (
                "oauth_client_stale_days",
                "a client with no live refresh token this long after registering is pruned",
            ),
            (
                "prune_interval_seconds",
                "how often the backend deletes expired refresh tokens, codes, idempotency keys "
                "and stale clients",
            ),
            (
                "idempotency_key_hours",
                "how long a create's idempotency key is kept (a retry after that creates anew)",
            ),
        ],
    ),
    (
        "Read cache",
        [
            ("cache_ttl", "seconds a read stays cached; `0` turns caching off"),
            (
                "cache_ttl_overrides",
                'per read tool TTLs, JSON, e.g. `{"list_tasks": 2}`',
            ),
            ("cache_url", "`memory://`, or `redis://host:6379/0` to share one cache"),
            ("cache_max_bytes", "the in-process cache's budget in bytes (an LRU)"),
            (
                "cache_max_entry_bytes",
                "the largest page any cache keeps; a larger one is served but not cached",
            ),
            (
                "cache_ttl_sync_seconds",
                "how often gateways on Redis pick up TTL changes",
            ),
        ],
    ),
    (
        "Limits",
        [
            (
                "rate_limit_per_user",
                "tool calls per second per user; shared through Redis when `CACHE_URL` is; "
                "`0` turns the limit off",
            ),
            ("rate_limit_burst", "calls allowed at once above that rate"),
            (
                "rate_limit_in_flight",
                "MCP requests one user may have running at once in one gateway; `0`: no cap",
            ),
            (
                "rest_rate_limit_per_user",
                "the backend's REST API: requests per second per user, per backend process; "
                "`0` turns it off",
            ),
            ("rest_rate_limit_burst", "REST requests allowed at once above that rate"),
            ("max_connections", "open connections per server process; past it, 503 and close"),
            (
                "max_connections_per_client",
                "open connections per client address (`TRUSTED_PROXIES` exempt)",
            ),
            (
                "new_connections_per_client_per_second",
                "the gateway's new connections per second per client address (an IPv6 one by "
                "its /64); past it, closed in accept() before anything is read; "
                "`TRUSTED_PROXIES` exempt; `0`: no limit",
            ),
            (
                "new_connections_per_client_burst",
                "new connections one address may open at once above that rate",
            ),
            (
                "request_read_timeout_seconds",
                "a request's head and body must arrive within this, or the connection closes",
            ),
            ("keep_alive_timeout_seconds", "idle keep-alive connections close after this"),
            ("signup_address_per_hour", "sign-ups per client address per hour; `0`: no limit"),
            ("signup_address_burst", "sign-ups allowed at once above that rate"),
            (
                "oauth_registrations_per_hour",
                "OAuth client registrations per client address per hour; `0`: no limit",
            ),
            ("oauth_registration_burst", "registrations allowed at once above that rate"),
            (
                "oauth_unverified_clients_max",
                "registered clients that no login has completed yet, at most",
            ),
            (
                "trusted_proxies",
                "proxies whose `X-Forwarded-For` is believed (addresses or networks, "
                "comma-separated); empty: the socket's peer",
            ),
        ],
    ),
    (
        "Operators",
        [
            (
                "admin_token",
                "turns the gateway's admin API on, and is its bearer token (32 characters "
                "or more); unset: off",
            ),
            (
                "replica_lag_sample_seconds",
                "how often the gateway samples replica lag for `/metrics`",
            ),
            (
                "metrics_port",
                "serve `/metrics` on this port only; `0`: on the MCP port",
            ),
            (
                "metrics_token",
                "`/metrics` on the MCP port (and the backend's port) then needs this bearer token",
            ),
            (
                "backend_metrics_port",
                "serve the backend's `/metrics` on this port only; `0`: on the backend's port",
            ),
            ("log_level", "`DEBUG`, `INFO`, `WARNING`, ..."),
            ("log_json", "one JSON object per log line"),
        ],
    ),
]


def _bounds(field: FieldInfo) -> str:
    parts: list[str] = []
    for rule in field.metadata:
        if isinstance(rule, Ge):
            parts.append(f">= {rule.ge}")
        elif isinstance(rule, Gt):
            parts.append(f"> {rule.gt}")
        elif isinstance(rule, Le):
            parts.append(f"<= {rule.le}")
    return ", ".join(parts)


def _default(default: Any) -> str:
    if default is None:
        return "unset"
    if default == [] or default == {}:
        return "empty"
    shown = setting_value(default)
    if "change-me" in shown:
        return "a placeholder (refused)"
    return f"`{shown}`" if shown else "empty"


def undocumented() -> list[str]:
    """Settings fields with no meaning here, and meanings of no field."""
    from shared.settings import Settings

    named = [name for _, rows in SECTIONS for name, _ in rows]
    fields = set(Settings.model_fields)
    missing = sorted(fields - set(named))
    extra = sorted(set(named) - fields)
    twice = sorted({name for name in named if named.count(name) > 1})
    return [*missing, *(f"{name} (no such setting)" for name in extra), *twice]


def render() -> str:
    from shared.settings import Settings

    fields = Settings.model_fields
    lines = [HEADER.replace("{regenerate}", REGENERATE)]
    for title, rows in SECTIONS:
        lines += [f"\n## {title}\n\n", "| setting | default | bounds | meaning |\n"]
        lines.append("| --- | --- | --- | --- |\n")
        for name, meaning in rows:
            field = fields[name]
            default = _default(field.get_default(call_default_factory=True))
            lines.append(f"| `{name.upper()}` | {default} | {_bounds(field)} | {meaning} |\n")
    lines += ["\n## Read by the command line only\n\n", "| variable | meaning |\n"]
    lines.append("| --- | --- |\n")
    lines += [f"| `{name}` | {meaning} |\n" for name, meaning in FOOTER_ROWS]
    return "".join(lines)


if __name__ == "__main__":
    problems = undocumented()
    if problems:
        raise SystemExit(f"settings without a meaning in {__name__}: {', '.join(problems)}")
    print(render(), end="")
