"""Every setting of every taskgate process, read once from the environment and `.env`."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The memory bound: the in-process cache's byte budget, and the largest entry any cache keeps.
CACHE_MAX_BYTES_DEFAULT = 64 * 2**20
CACHE_MAX_ENTRY_BYTES_DEFAULT = 512 * 2**10
# Shorter secrets fall to an offline brute force of one captured HS256 token.
MIN_SECRET_CHARS = 32
# A secret's entropy as estimated from its characters' frequencies; 32 random hex digits
# estimate about 120 bits, 32 times one character 0.
MIN_SECRET_BITS = 80
# Words that mark a value someone meant to replace (compared without case or separators).
_PLACEHOLDER_WORDS = ("changeme", "secret", "password", "placeholder", "replaceme", "example")


class InsecureSettings(ValueError):
    """A secret that a production process refuses to start with; the message says what to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Databases: the backend writes to the primary, the read model reads from the replica.
    database_url: str = "postgresql+asyncpg://taskgate:taskgate@127.0.0.1:5432/taskgate"
    read_database_url: str = "postgresql+asyncpg://taskgate_reader:taskgate@127.0.0.1:5433/taskgate"
    # Several replicas, comma-separated, each one server (not a pooler). Set, it replaces
    # READ_DATABASE_URL, which names one replica or one pooler/load balancer in front of several.
    read_database_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # A replica further behind than this (WAL waiting to be replayed) gets no reads until it
    # catches up; one that fails is left out for 1 s, doubling up to REPLICA_RETRY_MAX_SECONDS.
    replica_max_lag_seconds: float = Field(30.0, gt=0)
    replica_retry_max_seconds: float = Field(30.0, gt=0)
    # Where lagging reads may go instead of answering replica_unavailable. Empty: no fallback.
    read_fallback_database_url: str = ""
    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(10, ge=0)
    db_pool_timeout: float = Field(5.0, gt=0)
    # How long a read waits for a free replica connection before answering rate_limited (the
    # gateway is overloaded). Below REPLICA_TIMEOUT, which bounds the whole read.
    read_pool_timeout: float = Field(1.0, gt=0)
    db_connect_timeout: float = Field(2.0, gt=0)
    db_statement_timeout_ms: int = Field(2000, ge=0)

    # Gateway to backend.
    fastapi_base_url: str = "http://127.0.0.1:8000"
    # The app spec the gateway serves (module:attribute); the task service when unset.
    taskgate_app: str | None = None
    # What browsers and MCP clients call the backend (its OAuth issuer); defaults to the above.
    backend_public_url: str = ""
    backend_connect_timeout: float = Field(2.0, gt=0)
    backend_read_timeout: float = Field(10.0, gt=0)
    backend_write_timeout: float = Field(10.0, gt=0)
    backend_pool_timeout: float = Field(5.0, gt=0)
    backend_max_connections: int = Field(100, ge=1)
    # Below the backend's own keep-alive (KEEP_ALIVE_TIMEOUT_SECONDS, 5): the gateway lets an
    # idle connection go first, so a call never meets one the backend is closing.
    backend_keepalive_seconds: float = Field(4.0, ge=0)

    # MCP server.
    mcp_transport: Literal["stdio", "http"] = "http"
    mcp_host: str = "127.0.0.1"
    mcp_port: int = Field(8001, ge=0, le=65535)
    mcp_path: str = "/mcp"
    mcp_public_url: str = ""  # what clients call; defaults to http://MCP_HOST:MCP_PORT/mcp
    # The backend only: every gateway's public URL (comma-separated), the audiences it issues
    # gateway tokens for, besides MCP_PUBLIC_URL. Each gateway accepts its own alone.
    mcp_public_urls: str = ""
    mcp_stateless: bool = True
    mcp_json_response: bool = True
    mcp_allowed_hosts: list[str] = Field(default_factory=list)
    mcp_allowed_origins: list[str] = Field(default_factory=list)
    # Read and write tool calls answered in front of the MCP SDK (gateway.fast_path), in either
    # AUTH_MODE, when MCP_STATELESS and MCP_JSON_RESPONSE are on. Off: the SDK answers all.
    mcp_fast_path: bool = True
    # Registers the no-op `ping` tool that the benchmark uses as the transport floor.
    mcp_bench_tools: bool = False

    # Connections, per server process (taskgate/serving.py). Past either cap a new connection
    # gets 503 and is closed; TRUSTED_PROXIES are exempt from the per-client one. A request's
    # head and body must arrive within REQUEST_READ_TIMEOUT_SECONDS; idle keep-alive connections
    # close after KEEP_ALIVE_TIMEOUT_SECONDS.
    max_connections: int = Field(4096, ge=1)
    max_connections_per_client: int = Field(256, ge=1)
    # New connections per client address and second, after a burst; past it a connection is
    # closed in accept() before anything is read. TRUSTED_PROXIES are exempt;
    # 0 turns the limit off.
    new_connections_per_client_per_second: float = Field(32.0, ge=0)
    new_connections_per_client_burst: int = Field(256, ge=1)
    request_read_timeout_seconds: float = Field(10.0, gt=0)
    keep_alive_timeout_seconds: int = Field(5, ge=1)

    # Stdio credentials: a token, or an email and password logged in at start-up.
    gateway_token: SecretStr | None = None
    gateway_email: str | None = None
    gateway_password: SecretStr | None = None
    auth_mode: Literal["token", "user_param"] = "token"

    # `taskgate connect`, the stdio bridge: a bearer token for the gateway (else an OAuth login),
    # and where the OAuth tokens are kept (default ~/.config/taskgate/tokens.json).
    mcp_token: SecretStr | None = None
    connect_tokens_file: str = ""

    # Backend.
    backend_host: str = "127.0.0.1"
    backend_port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(64 * 1024, ge=1024)

    # Login throttling (backend/login_limits.py): failed attempts allowed before back-off,
    # per account and per client address; the back-off doubles from its first value.
    login_account_failures: int = Field(5, ge=1)
    login_address_failures: int = Field(50, ge=1)
    login_backoff_seconds: float = Field(1.0, gt=0)
    login_backoff_max_seconds: float = Field(900.0, gt=0)
    login_failure_window_seconds: float = Field(3600.0, gt=0)
    login_limit_entries: int = Field(50_000, ge=1)  # per table, about 350 bytes each
    # A browser that logged in keeps a signed device cookie this long: its own allowance of
    # LOGIN_ACCOUNT_FAILURES, untouched by failures on its account or address from elsewhere.
    login_device_cookie_days: int = Field(30, ge=1)
    # Sign-ups per client address: a burst, then this many an hour (0 turns the limit off).
    signup_address_burst: int = Field(10, ge=1)
    signup_address_per_hour: float = Field(30.0, ge=0)
    # argon2 (64 MiB each) at most this many at once, so logins cannot starve other requests.
    # Sign-ups use at most half of them, and a free one goes to a waiting login first.
    password_hash_concurrency: int = Field(2, ge=1)
    password_hash_queue: int = Field(256, ge=0)

    # Tokens.
    jwt_secret: SecretStr = SecretStr("change-me-in-production-this-is-not-a-secret")
    jwt_issuer: str = "taskgate"
    jwt_audience: str = "taskgate-api"
    jwt_ttl_seconds: int = Field(3600, ge=1)
    # OAuth: backend tokens minted by token exchange for the gateway, refresh tokens, codes.
    backend_token_ttl_seconds: int = Field(300, ge=1)
    oauth_refresh_ttl_seconds: int = Field(30 * 24 * 3600, ge=60)
    oauth_code_ttl_seconds: int = Field(60, ge=1, le=600)
    # Dynamic client registration: per client address a burst, then this many an hour (0 turns
    # the limit off); at most this many clients that no login has completed yet; a client with
    # no live refresh token this many days after it registered is pruned.
    oauth_registration_burst: int = Field(10, ge=1)
    oauth_registrations_per_hour: float = Field(30.0, ge=0)
    oauth_unverified_clients_max: int = Field(1000, ge=1)
    oauth_client_stale_days: int = Field(90, ge=1)
    # The backend deletes what outlived its use this often (backend/pruning.py): expired refresh
    # tokens and codes, idempotency keys older than IDEMPOTENCY_KEY_HOURS (a retry after that
    # creates a new task), stale clients.
    prune_interval_seconds: float = Field(3600.0, gt=0)
    idempotency_key_hours: float = Field(24.0, gt=0)

    # Read cache and read-your-writes.
    cache_ttl: float = Field(5.0, ge=0)
    cache_ttl_overrides: dict[str, float] = Field(default_factory=dict)
    cache_url: str = "memory://"
    cache_max_bytes: int = Field(CACHE_MAX_BYTES_DEFAULT, ge=2**20)
    cache_max_entry_bytes: int = Field(CACHE_MAX_ENTRY_BYTES_DEFAULT, ge=1024)
    ryw_wait_timeout: float = Field(1.0, ge=0)
    # Connecting plus querying, in all; under 2 s so a read of a dead replica answers in 2 s.
    replica_timeout: float = Field(1.5, gt=0)

    # Tool calls per user and second, with a burst; shared through Redis when CACHE_URL is.
    # 0 turns the limit off. Far above an agent's pace and the load test's (64 agents).
    rate_limit_per_user: float = Field(50.0, ge=0)
    rate_limit_burst: int = Field(100, ge=1)
    # Calls (and other MCP requests) one user may have running at once in one gateway; past
    # it, rate_limited. 0 turns the cap off, and so does RATE_LIMIT_PER_USER=0.
    rate_limit_in_flight: int = Field(8, ge=0)
    # The backend's REST API, per user and second, with a burst; per backend process, counted
    # before the request touches the database. 0 turns it off.
    rest_rate_limit_per_user: float = Field(20.0, ge=0)
    rest_rate_limit_burst: int = Field(40, ge=1)

    # Operators: the admin API (off while ADMIN_TOKEN is unset), TTL sharing, lag sampling.
    admin_token: SecretStr | None = None
    cache_ttl_sync_seconds: float = Field(1.0, gt=0)  # bound on a TTL change reaching all gateways
    replica_lag_sample_seconds: float = Field(5.0, gt=0)
    # Proxies whose X-Forwarded-For is believed (comma-separated addresses or networks, as
    # uvicorn's FORWARDED_ALLOW_IPS). Empty: the client address is the socket's peer.
    trusted_proxies: str = ""
    # /metrics: with METRICS_PORT set, served on that port only (MCP_HOST); with METRICS_TOKEN
    # set, /metrics on the MCP port needs it as a bearer token. Neither: public on the MCP port.
    metrics_port: int = Field(0, ge=0, le=65535)
    metrics_token: SecretStr | None = None
    # The backend's /metrics: on this port only (BACKEND_HOST) when set, else on the backend's
    # port, behind METRICS_TOKEN when that is set.
    backend_metrics_port: int = Field(0, ge=0, le=65535)
    log_level: str = "INFO"
    log_json: bool = False

    @field_validator("read_database_urls", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().startswith("["):
            return json.loads(value)  # a JSON list, as other list settings are written
        if isinstance(value, str):
            return [url.strip() for url in value.split(",") if url.strip()]
        return value

    @property
    def replica_urls(self) -> list[str]:
        """The replicas to read from, in order: READ_DATABASE_URLS, else READ_DATABASE_URL."""
        return self.read_database_urls or [self.read_database_url]

    @property
    def replicas_are_servers(self) -> bool:
        """True when each replica URL is one server, so a replay position seen on one connection
        holds for all of its connections. A lone READ_DATABASE_URL may be a pooler: no."""
        return bool(self.read_database_urls)

    @field_validator("cache_ttl_overrides")
    @classmethod
    def _known_tools(cls, value: dict[str, float]) -> dict[str, float]:
        # The names are checked against the app spec's read tools when the gateway starts.
        if any(ttl < 0 for ttl in value.values()):
            raise ValueError("TTLs must be >= 0")
        return value

    @model_validator(mode="after")
    def _bounds_fit(self) -> Settings:
        if self.cache_max_entry_bytes > self.cache_max_bytes:
            raise ValueError("CACHE_MAX_ENTRY_BYTES must not exceed CACHE_MAX_BYTES")
        if self.read_pool_timeout >= self.replica_timeout:
            # Else the read's own bound fires first, and an overload reads as a dead replica.
            raise ValueError("READ_POOL_TIMEOUT must be below REPLICA_TIMEOUT")
        return self

    def require_production_secrets(self) -> None:
        """Refuse a missing, placeholder, short or predictable JWT_SECRET or ADMIN_TOKEN.

        Called by the command line before a server starts, not on construction, so tests and
        tools build Settings freely. The default JWT_SECRET is a public placeholder.
        """
        how = (
            f"set it to a random string of at least {MIN_SECRET_CHARS} characters (python -c "
            "'import secrets; print(secrets.token_urlsafe(32))')"
        )
        weakness = secret_weakness(self.jwt_secret.get_secret_value())
        if weakness:
            raise InsecureSettings(f"JWT_SECRET is {weakness}: {how}")
        # An empty ADMIN_TOKEN turns the admin API off, as an unset one does.
        admin_token = self.admin_token.get_secret_value() if self.admin_token else ""
        weakness = secret_weakness(admin_token) if admin_token else None
        if weakness:
            raise InsecureSettings(
                f"ADMIN_TOKEN is {weakness}: {how}, or unset it to turn the admin API off"
            )

    @property
    def backend_url(self) -> str:
        return (self.backend_public_url or self.fastapi_base_url).rstrip("/")

    @property
    def gateway_audiences(self) -> list[str]:
        """MCP_PUBLIC_URL and MCP_PUBLIC_URLS, without duplicates."""
        extra = [url.strip() for url in self.mcp_public_urls.split(",") if url.strip()]
        return list(dict.fromkeys([self.mcp_url, *extra]))

    @property
    def mcp_url(self) -> str:
        return self.mcp_public_url or f"http://{self.mcp_host}:{self.mcp_port}{self.mcp_path}"


def secret_weakness(secret: str) -> str | None:
    """Why `secret` would not hold against a guess, or None when it would.

    Placeholders are matched case-insensitively with separators ignored ("CHANGE_ME",
    "change-me", "ChangeMe"); entropy is estimated from the secret's own character frequencies
    (Shannon), which a repeated character or a short repeated pattern brings near zero.
    """
    compact = re.sub(r"[\W_]+", "", secret.lower())
    if not secret.strip() or any(word in compact for word in _PLACEHOLDER_WORDS):
        return "unset or a placeholder"
    if len(secret) < MIN_SECRET_CHARS:
        return f"{len(secret)} characters, under {MIN_SECRET_CHARS}"
    counts = Counter(secret)
    bits = -sum(n * math.log2(n / len(secret)) for n in counts.values())
    if bits < MIN_SECRET_BITS or secret in (secret + secret)[1:-1]:
        return "too predictable (repeated characters or a repeated pattern)"
    return None
