"""`taskgate migrate`: Alembic's upgrade to head, on DATABASE_URL."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # '%' is ConfigParser's interpolation character; passwords may contain it.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_to_head(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "head")


def upgrade_when_ready(database_url: str, wait_seconds: float) -> None:
    """upgrade_to_head, retried while the database cannot be reached, for up to wait_seconds.

    A fresh primary refuses connections (or is still running its init scripts) for a while;
    compose starts the migration alongside it, so the migration waits instead of failing.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            upgrade_to_head(database_url)
            return
        except (DBAPIError, OSError) as exc:
            if time.monotonic() >= deadline:
                raise
            log.info("database not ready (%s); retrying", type(exc).__name__)
            time.sleep(1.0)
