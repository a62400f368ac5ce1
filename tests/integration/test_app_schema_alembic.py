"""`taskgate dev --app` with a spec that names alembic_ini: the app's own migrations build the
schema on a real primary, the replicas' reader gets SELECT on the owned tables and nothing else,
and a missing or broken Alembic setup is one clear error before or instead of a traceback."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.appspec import AppSpec
from taskgate.app_schema import SchemaError, check_app_schema, create_app_schema
from taskgate.pgpair import READER_ROLE, PgPair
from tests.support.alembic_app.models import Item

APP_DIR = Path(__file__).parents[1] / "support" / "alembic_app"


def _spec(alembic_ini: str) -> AppSpec:
    # Only the schema's parts matter here: the app is never started.
    return AppSpec(
        name="items",
        openapi="openapi.json",
        owners={Item: Item.owner_id},
        alembic_ini=alembic_ini,
        root=str(APP_DIR),
    )


@pytest.fixture(scope="module")
def pair() -> Iterator[PgPair]:
    """A primary and a replica with no schema of taskgate's: only the app's migrations run."""
    root = Path(tempfile.mkdtemp(prefix="alembic-app-"))
    pair = PgPair(root, replicas=1)
    try:
        pair.start()
        yield pair
    finally:
        pair.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_the_apps_migrations_build_its_schema_and_grant_the_reader(pair: PgPair) -> None:
    create_app_schema(_spec("alembic.ini"), pair.database_url, READER_ROLE)

    assert pair.psql("SELECT version_num FROM alembic_version") == "0001_items"
    # The check exists only in the revision: the migrations ran, not metadata.create_all.
    constraint = "SELECT conname FROM pg_constraint WHERE conname = 'items_name_not_empty'"
    assert pair.psql(constraint) == "items_name_not_empty"
    can_read = "SELECT has_table_privilege('{role}', '{table}', 'SELECT')"
    assert pair.psql(can_read.format(role=READER_ROLE, table="items")) == "t"
    assert pair.psql(can_read.format(role=READER_ROLE, table="alembic_version")) == "f"


def test_running_it_again_is_a_no_op(pair: PgPair) -> None:
    create_app_schema(_spec("alembic.ini"), pair.database_url, READER_ROLE)
    create_app_schema(_spec("alembic.ini"), pair.database_url, READER_ROLE)

    assert pair.psql("SELECT count(*) FROM alembic_version") == "1"


def test_a_missing_alembic_ini_is_refused_before_anything_starts() -> None:
    with pytest.raises(SchemaError, match=r"alembic_ini '.*nope\.ini': no such file"):
        check_app_schema(_spec("nope.ini"))


def test_broken_migrations_are_one_clear_error_without_the_database_url(pair: PgPair) -> None:
    with pytest.raises(SchemaError) as refused:
        create_app_schema(_spec("broken.ini"), pair.database_url, READER_ROLE)

    message = str(refused.value)
    assert message.startswith(f"the Alembic migrations of {APP_DIR / 'broken.ini'} failed: ")
    assert "no-such-folder" in message
    assert pair.database_url not in message
