"""taskgate.fastapi in an app whose engine is a plain (sync) SQLAlchemy Engine on psycopg, as
most FastAPI apps have (full-stack-fastapi-template, SQLModel): each write answers the primary's
position after its commit, and /wal-position answers, from a real primary."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from readmodel.lsn import parse_lsn
from taskgate.fastapi import LSN_HEADER, WAL_POSITION_PATH, install_commit_lsn
from taskgate.pgpair import PgPair

PROBE = "sync_engine_lsn_probe"


@pytest.fixture(scope="module")
def sync_engine(pg_pair: PgPair) -> Iterator[Engine]:
    url = make_url(pg_pair.database_url).set(drivername="postgresql+psycopg")
    engine = create_engine(url, pool_size=2)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {PROBE} (id bigserial PRIMARY KEY)"))
    try:
        yield engine
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {PROBE}"))
        engine.dispose()


def _app(engine: Engine) -> FastAPI:
    app = FastAPI()

    @app.post("/things", status_code=201)
    def create_thing() -> dict[str, Any]:  # a sync route, as the app's own are
        with engine.begin() as conn:
            thing = conn.scalar(text(f"INSERT INTO {PROBE} DEFAULT VALUES RETURNING id"))
        with engine.connect() as conn:
            committed = conn.scalar(text("SELECT pg_current_wal_flush_lsn()::text"))
        return {"id": thing, "committed_at": committed}

    install_commit_lsn(app, engine)
    return app


async def test_a_sync_engines_writes_answer_the_position_after_their_commit(
    sync_engine: Engine,
) -> None:
    transport = httpx.ASGITransport(app=_app(sync_engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as http:
        written = await http.post("/things")
        now = await http.get(WAL_POSITION_PATH)
    assert written.status_code == 201, written.text
    position = parse_lsn(written.headers[LSN_HEADER])
    assert position >= parse_lsn(written.json()["committed_at"])
    assert now.status_code == 200 and parse_lsn(now.json()["lsn"]) >= position


def test_something_that_is_not_an_engine_is_refused_when_installed() -> None:
    a_url: Any = "postgresql://not-an-engine"  # what a user may pass by mistake
    with pytest.raises(TypeError, match="an AsyncEngine or an Engine"):
        install_commit_lsn(FastAPI(), a_url)
