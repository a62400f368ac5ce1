"""Keyset paging: the one page builder both the backend and the read model use.

The start of a later page is a row comparison, `(a, b) < (cursor's)`. Unlike the equivalent OR,
PostgreSQL uses it as an index condition, so page N starts at its place in the index instead of
filtering the N-1 pages before it (tests check both sides' plans).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, tuple_
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from shared.models import Task
from shared.rules import Status

S = TypeVar("S", bound=Select[*tuple[Any, ...]])


def order_columns(order: Sequence[ColumnElement[Any]]) -> tuple[list[ColumnElement[Any]], bool]:
    """The columns of an order, and whether it is descending; ValueError for mixed directions
    (a row comparison cannot page those) or for anything but plain columns."""
    columns: list[ColumnElement[Any]] = []
    directions: set[bool] = set()
    for term in order:
        descending = False
        if isinstance(term, UnaryExpression) and term.modifier in (
            operators.desc_op,
            operators.asc_op,
        ):
            descending = term.modifier is operators.desc_op
            term = term.element
        columns.append(term)
        directions.add(descending)
    if len(directions) != 1:
        raise ValueError("every column of a paged order must go in the same direction")
    return columns, directions.pop()


def keyset_page(
    query: S, order: Sequence[ColumnElement[Any]], after: Sequence[Any] | None, rows: int
) -> S:
    """`query` in `order`, starting after the row whose order values are `after`, `rows` long."""
    columns, descending = order_columns(order)
    if after is not None:
        boundary = tuple_(*columns), tuple_(*after)
        query = query.where(boundary[0] < boundary[1] if descending else boundary[0] > boundary[1])
    return query.order_by(*order).limit(rows)


NEWEST_FIRST = (Task.created_at.desc(), Task.id.desc())


# The (created_at, id) of the last task of a page.
TaskKeyset = tuple[datetime, int]


def newest_first(query: S, user_id: int, status: Status, after: TaskKeyset | None, rows: int) -> S:
    """`query` limited to the user's tasks of `status` after the keyset, newest first."""
    query = query.where(Task.user_id == user_id)
    if status != "all":
        query = query.where(Task.completed == (status == "completed"))
    return keyset_page(query, NEWEST_FIRST, after, rows)
