"""An app's schema on the primary, for `taskgate dev --app`: its Alembic migrations when the
spec names an alembic.ini, else its metadata's create_all; then SELECT on the tables its read
tools read, for the replicas' reader role, and nothing more."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.appspec import AppSpec


class SchemaError(ValueError):
    """The spec's schema cannot be created; the message says why, without the database URL."""


def alembic_ini(spec: AppSpec) -> Path | None:
    """The spec's alembic.ini, relative to the spec's folder when not absolute."""
    if spec.alembic_ini is None:
        return None
    ini = Path(spec.alembic_ini)
    return ini if ini.is_absolute() else Path(spec.root or os.getcwd()) / ini


def check_app_schema(spec: AppSpec) -> None:
    """Refuses, before any server starts, a spec that gives no way to create its schema."""
    ini = alembic_ini(spec)
    if ini is None and spec.metadata is None:
        raise SchemaError(f"the app spec {spec.name} names neither metadata nor alembic_ini")
    if ini is not None and not ini.is_file():
        raise SchemaError(f"the app spec {spec.name} names alembic_ini {str(ini)!r}: no such file")


def create_app_schema(spec: AppSpec, database_url: str, reader_role: str | None) -> None:
    check_app_schema(spec)
    ini = alembic_ini(spec)
    if ini is not None:
        config = Config(str(ini))
        # The async URL, as taskgate's own env.py takes it: the app's env.py must run on asyncpg
        # (`alembic init -t async`), since that is the one driver taskgate installs.
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
        try:
            command.upgrade(config, "head")
        except Exception as failure:  # the app's own env.py and revisions: anything may fail
            raise SchemaError(
                f"the Alembic migrations of {ini} failed: {type(failure).__name__}: {failure}"
            ) from failure
    asyncio.run(_create_and_grant(spec, database_url, reader_role))


async def _create_and_grant(spec: AppSpec, database_url: str, reader_role: str | None) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            if spec.alembic_ini is None and spec.metadata is not None:
                metadata: MetaData = spec.metadata
                await conn.run_sync(metadata.create_all)
            if reader_role is not None:
                for model in spec.owners:
                    table = model.__table__.name
                    await conn.execute(text(f'GRANT SELECT ON "{table}" TO "{reader_role}"'))
    finally:
        await engine.dispose()
