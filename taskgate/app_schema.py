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
    """The spec gives no way to create its schema."""


def create_app_schema(spec: AppSpec, database_url: str, reader_role: str | None) -> None:
    if spec.alembic_ini is not None:
        ini = Path(spec.alembic_ini)
        if not ini.is_absolute():
            ini = Path(spec.root or os.getcwd()) / ini
        config = Config(str(ini))
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
        command.upgrade(config, "head")
    elif spec.metadata is None:
        raise SchemaError(f"the app spec {spec.name} names neither metadata nor alembic_ini")
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
