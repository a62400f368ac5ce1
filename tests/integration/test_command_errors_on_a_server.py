"""`taskgate migrate` against a real server that refuses: a wrong password, a missing database."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from taskgate.pgpair import PgPair
from tests.support.commands import assert_one_line, taskgate


def test_a_wrong_password_is_named_in_one_line(pg_pair: PgPair, tmp_path: Path) -> None:
    url = make_url(pg_pair.database_url).set(password="not-the-password")
    rendered = url.render_as_string(hide_password=False)
    result = taskgate(tmp_path, {"DATABASE_URL": rendered}, "migrate")
    assert_one_line(result, "taskgate migrate: DATABASE_URL: ", f"refused user '{url.username}'")
    assert "not-the-password" not in result.stderr


def test_a_missing_database_is_named_in_one_line(pg_pair: PgPair, tmp_path: Path) -> None:
    url = make_url(pg_pair.database_url).set(database="no_such_db")
    rendered = url.render_as_string(hide_password=False)
    result = taskgate(tmp_path, {"DATABASE_URL": rendered}, "migrate")
    assert_one_line(result, "DATABASE_URL: ", "has no database 'no_such_db'")
