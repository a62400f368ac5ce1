"""HTTP names that more than one taskgate process speaks (backend, gateway, command line)."""

from __future__ import annotations

API_PREFIX = "/api/v1"
LOGIN_PATH = f"{API_PREFIX}/auth/token"
# The backend's OAuth 2.1 authorization server for MCP clients (the MCP SDK serves /authorize and
# /register at these paths; the token endpoint is the backend's own).
OAUTH_METADATA_PATH = "/.well-known/oauth-authorization-server"  # RFC 8414
OAUTH_AUTHORIZE_PATH = "/authorize"
OAUTH_TOKEN_PATH = "/token"
OAUTH_REGISTER_PATH = "/register"  # RFC 7591
# A write's commit position, which the gateway waits for on the replica before the caller reads.
LSN_HEADER = "X-Commit-LSN"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# One id per call, sent by the gateway to the backend, so both processes log it.
REQUEST_ID_HEADER = "X-Request-ID"
# `true` on a create that returned the task of an earlier call with the same Idempotency-Key.
REPLAYED_HEADER = "Idempotent-Replayed"
# Who changed the cache settings, named by `taskgate cache` to the gateway's admin API.
ADMIN_ACTOR_HEADER = "X-Admin-Actor"
# Every taskgate server's probes: the process is alive; what it depends on can be reached.
LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
# The primary's current WAL position, which a gateway that lost its write marks waits for.
WAL_POSITION_PATH = "/wal-position"
# The gateway's admin API, called by `taskgate cache`.
ADMIN_CACHE_PATH = "/admin/cache"
ADMIN_TTL_PATH = f"{ADMIN_CACHE_PATH}/ttl"
ADMIN_FLUSH_PATH = f"{ADMIN_CACHE_PATH}/flush"
