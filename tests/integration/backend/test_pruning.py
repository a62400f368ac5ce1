"""The backend process prunes what outlived its use, on the real primary: expired refresh tokens
and codes, idempotency keys past their window, stale clients; and keeps everything still live."""

from __future__ import annotations

import time
import uuid

from shared.settings import Settings
from taskgate.pgpair import PgPair
from tests.support.processes import running_backend


def _count(pg_pair: PgPair, table: str, where: str) -> int:
    return int(pg_pair.psql(f"SELECT count(*) FROM {table} WHERE {where}"))


def test_the_backend_prunes_expired_and_stale_rows_and_keeps_live_ones(
    settings: Settings, pg_pair: PgPair
) -> None:
    tag = uuid.uuid4().hex[:10]
    user = pg_pair.psql(
        f"INSERT INTO users (email, password_hash) VALUES ('prune-{tag}@example.com', 'x') "
        "RETURNING id"
    ).splitlines()[0]
    clients = {"stale": f"{tag}-stale", "old-but-used": f"{tag}-used", "fresh": f"{tag}-fresh"}
    for kind, client_id in clients.items():
        age = "interval '200 days'" if kind != "fresh" else "interval '0 days'"
        pg_pair.psql(
            f"INSERT INTO oauth_clients (client_id, info, created_at) "
            f"VALUES ('{client_id}', '{{}}', now() - {age})"
        )
    token = (
        "INSERT INTO oauth_refresh_tokens (token_hash, family_id, client_id, user_id, resource, "
        "expires_at) VALUES ('{hash}', 'f-{tag}', '{client}', {user}, 'r', now() + {offset})"
    )
    pg_pair.psql(
        token.format(
            hash=f"expired-{tag}",
            tag=tag,
            client=clients["fresh"],
            user=user,
            offset="interval '-1 day'",
        )
    )
    pg_pair.psql(
        token.format(
            hash=f"live-{tag}",
            tag=tag,
            client=clients["old-but-used"],
            user=user,
            offset="interval '10 days'",
        )
    )
    pg_pair.psql(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, created_at) VALUES "
        f"({user}, 'old-{tag}', 'h', now() - interval '2 days'), "
        f"({user}, 'new-{tag}', 'h', now())"
    )
    env = {"DATABASE_URL": settings.database_url, "PRUNE_INTERVAL_SECONDS": "0.2"}
    with running_backend(env):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            gone = (
                _count(pg_pair, "oauth_refresh_tokens", f"token_hash = 'expired-{tag}'") == 0
                and _count(pg_pair, "idempotency_keys", f"key = 'old-{tag}'") == 0
                and _count(pg_pair, "oauth_clients", f"client_id = '{clients['stale']}'") == 0
            )
            if gone:
                break
            time.sleep(0.1)
    assert gone, "the backend did not prune within 60 s"
    assert _count(pg_pair, "oauth_refresh_tokens", f"token_hash = 'live-{tag}'") == 1
    assert _count(pg_pair, "idempotency_keys", f"key = 'new-{tag}'") == 1
    for kind in ("old-but-used", "fresh"):
        assert _count(pg_pair, "oauth_clients", f"client_id = '{clients[kind]}'") == 1, kind
