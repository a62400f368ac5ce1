"""Keyset paging of one user's tasks, newest first: the one predicate and order both sides use.

The start of a later page is a row comparison, `(created_at, id) < (cursor's)`. Unlike the
equivalent OR, PostgreSQL uses it as an index condition, so page N starts at its place in the
index instead of filtering the N-1 pages before it (tests check both sides' plans).
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, tuple_

from shared.cursor import Keyset
from shared.models import Task
from shared.rules import Status

S = TypeVar("S", bound=Select[*tuple[Any, ...]])


def newest_first(query: S, user_id: int, status: Status, after: Keyset | None, rows: int) -> S:
    """`query` limited to the user's tasks of `status` after the keyset, newest first."""
    query = query.where(Task.user_id == user_id)
    if status != "all":
        query = query.where(Task.completed == (status == "completed"))
    if after is not None:
        query = query.where(tuple_(Task.created_at, Task.id) < tuple_(after.created_at, after.id))
    return query.order_by(Task.created_at.desc(), Task.id.desc()).limit(rows)
