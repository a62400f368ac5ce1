"""Rows that outlive their use, deleted by the backend on a schedule (PRUNE_INTERVAL_SECONDS):

- refresh tokens past their expiry (a rotated or revoked one is kept until then, so a replay
  of it is still recognised and revokes its family);
- authorization codes past their expiry and the time a replay is recognised (USED_CODE_KEEP);
- idempotency keys older than IDEMPOTENCY_KEY_HOURS: a retry within that window gets the same
  task back, a later one creates a new task;
- clients registered OAUTH_CLIENT_STALE_DAYS ago or more that hold no live refresh token
  (their codes and tokens go with them).

Deletes go in batches of PRUNE_BATCH rows, each its own short transaction, so a large backlog
never holds a long lock or one huge WAL record on the primary and its replicas.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import Delete, delete, exists, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.oauth.provider import USED_CODE_KEEP
from shared.models import IdempotencyKey, OAuthClient, OAuthCode, OAuthRefreshToken
from shared.settings import Settings

log = logging.getLogger(__name__)
PRUNE_BATCH = 5000


def _statements(settings: Settings, now: datetime) -> dict[str, Delete]:
    tokens = select(OAuthRefreshToken.token_hash).where(OAuthRefreshToken.expires_at < now)
    codes = select(OAuthCode.code_hash).where(OAuthCode.expires_at < now - USED_CODE_KEEP)
    keys = select(IdempotencyKey.user_id, IdempotencyKey.key).where(
        IdempotencyKey.created_at < now - timedelta(hours=settings.idempotency_key_hours)
    )
    live_token = exists().where(
        OAuthRefreshToken.client_id == OAuthClient.client_id,
        OAuthRefreshToken.expires_at >= now,
        OAuthRefreshToken.revoked_at.is_(None),
    )
    clients = select(OAuthClient.client_id).where(
        OAuthClient.created_at < now - timedelta(days=settings.oauth_client_stale_days),
        ~live_token,
    )
    return {
        "refresh tokens": delete(OAuthRefreshToken).where(
            OAuthRefreshToken.token_hash.in_(tokens.limit(PRUNE_BATCH).scalar_subquery())
        ),
        "authorization codes": delete(OAuthCode).where(
            OAuthCode.code_hash.in_(codes.limit(PRUNE_BATCH).scalar_subquery())
        ),
        "idempotency keys": delete(IdempotencyKey).where(
            tuple_(IdempotencyKey.user_id, IdempotencyKey.key).in_(keys.limit(PRUNE_BATCH))
        ),
        "clients": delete(OAuthClient).where(
            OAuthClient.client_id.in_(clients.limit(PRUNE_BATCH).scalar_subquery())
        ),
    }


async def prune_once(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> dict[str, int]:
    """Delete everything due now; how many rows of each kind went."""
    pruned: dict[str, int] = {}
    for kind, statement in _statements(settings, datetime.now(UTC)).items():
        pruned[kind] = 0
        while True:
            async with sessions() as session:
                result = await session.execute(statement)
                await session.commit()
            deleted = int(result.rowcount or 0)  # type: ignore[attr-defined]
            pruned[kind] += deleted
            if deleted < PRUNE_BATCH:
                break
    return pruned


async def prune_periodically(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """prune_once now and every PRUNE_INTERVAL_SECONDS, until cancelled; a failure is logged."""
    while True:
        try:
            pruned = await prune_once(sessions, settings)
            if any(pruned.values()):
                log.info("pruned %s", ", ".join(f"{n} {kind}" for kind, n in pruned.items() if n))
        except Exception as exc:  # the database may be down for a while: try again next time
            log.warning("pruning failed: %s", type(exc).__name__)
        await asyncio.sleep(settings.prune_interval_seconds)
