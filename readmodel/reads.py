"""A spec's read tools, checked once at start and built into their selects on each call.

Every statement gets, whatever the spec wrote: `owner == caller` on each table it reads, and for
a page, keyset paging on the declared order. A spec that cannot be served that way (a table
without an owner column, a table reached through a subquery, an order that cannot be paged)
is refused here, when the gateway starts, never at a call.
"""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, get_args, get_origin

from cachetools import LRUCache
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from sqlalchemy import ColumnElement, Select, Table, Uuid
from sqlalchemy.sql.selectable import Join
from sqlalchemy.sql.util import find_tables

from shared.appspec import AppSpec, ReadTool
from shared.cursor import decode_keyset, encode_keyset, keyset_json
from shared.errors import ErrorCode, TaskgateError
from shared.paging import keyset_page, order_columns
from shared.rules import CURSOR_MAX, LIMIT_DEFAULT, LIMIT_MAX, LIMIT_MIN, PageLimit
from shared.user_ids import INT_IDS, UserId, UserIds, user_ids_for

PAGE_ARGUMENTS = ("limit", "cursor")
Limit = Annotated[PageLimit, Field(description=f"How many per page, {LIMIT_MIN} to {LIMIT_MAX}.")]
Cursor = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=CURSOR_MAX,
        description="next_cursor from the previous page; omit for the first page.",
    ),
]


# Statement shapes whose owner columns each read tool remembers: a query function builds a few
# (one per branch on its arguments), and an entry is a cache key and a column or two.
OWNER_SHAPES_MAX = 64


class SpecError(ValueError):
    """A spec the gateway cannot serve; raised at start, with what to change."""


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class CompiledRead:
    """One read tool, ready to answer: its argument model, its owner filters, its order."""

    tool: ReadTool
    arguments: type[BaseModel]
    filters: tuple[str, ...]  # the query function's own parameters
    owners: Mapping[Table, ColumnElement[Any]]
    order: tuple[ColumnElement[Any], ...]
    order_keys: tuple[str, ...]  # where each order column's value sits in a row
    user_ids: UserIds  # the kind of id the owner columns hold
    uuid_values: bool  # it selects UUID columns, which a row's JSON holds as text
    # The owner columns of each statement shape (by SQLAlchemy cache key) the query built.
    owner_shapes: LRUCache[Any, tuple[ColumnElement[Any], ...]] = field(
        default_factory=lambda: LRUCache(maxsize=OWNER_SHAPES_MAX), compare=False, repr=False
    )

    @property
    def name(self) -> str:
        return self.tool.name

    def checked(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments validated by the tool's model, or a validation_error."""
        try:
            return self.arguments.model_validate(arguments).model_dump()
        except ValidationError as exc:
            first = exc.errors(include_input=False)[0]
            field = ".".join(str(part) for part in first["loc"]) or "arguments"
            raise TaskgateError(
                ErrorCode.VALIDATION_ERROR, f"{field}: {first['msg']}", {"field": field}
            ) from None

    def scope(self, arguments: Mapping[str, Any]) -> str:
        """The filter arguments, canonical: one cache key part, and what a cursor is bound to."""
        values = [_jsonable(arguments[f]) for f in self.filters]
        return json.dumps([self.name, values], default=str)  # a UUID or a Decimal, as text

    def statement(self, user_id: UserId, arguments: Mapping[str, Any], after: Any = None) -> Any:
        query = self.tool.query(**{f: arguments[f] for f in self.filters})
        owner = self.user_ids.bind(user_id)
        for column in _owner_columns(self, query):
            query = query.where(column == owner)
        if self.tool.shape == "page":
            query = keyset_page(query, self.order, after, arguments["limit"] + 1)
        return query

    def cursor_after(self, secret: bytes, arguments: Mapping[str, Any]) -> tuple[Any, ...] | None:
        cursor = arguments.get("cursor")
        if cursor is None:
            return None
        return decode_keyset(secret, self.scope(arguments), cursor, len(self.order_keys))

    def next_cursor(
        self, secret: bytes, arguments: Mapping[str, Any], last: Mapping[Any, Any]
    ) -> str:
        values = tuple(last[key] for key in self.order_keys)
        return encode_keyset(secret, self.scope(arguments), values)

    def key_part(self, arguments: Mapping[str, Any], after: tuple[Any, ...] | None) -> str:
        """The arguments as a cache key part. A page's key holds the decoded keyset, never the
        cursor's text: the decoder is lenient (padding), and one page must not fill many keys."""
        if self.tool.shape != "page":
            return self.scope(arguments)
        keyset = None if after is None else keyset_json(after)
        return json.dumps([self.scope(arguments), arguments["limit"], keyset])


ReadTools = Mapping[str, CompiledRead]


def compile_reads(spec: AppSpec) -> dict[str, CompiledRead]:
    """Every read tool of the spec, checked: SpecError names the first that cannot be served."""
    owners = _owner_table(spec)
    user_ids = owner_id_kind(spec)
    compiled: dict[str, CompiledRead] = {}
    for tool in spec.reads:
        if tool.name in compiled:
            raise SpecError(f"read tool {tool.name!r} is declared twice")
        try:
            compiled[tool.name] = _compile(tool, owners, user_ids)
        except SpecError as exc:
            raise SpecError(f"read tool {tool.name!r}: {exc}") from None
    return compiled


def owner_id_kind(spec: AppSpec) -> UserIds:
    """The kind of user id the spec's owner columns hold, declared once by their SQL type:
    integers (Integer, BigInteger) or UUIDs (Uuid, postgresql.UUID), the same for every owner
    column; SpecError names the columns otherwise. No owner columns: integers."""
    kinds = {
        f"{table.name}.{column.name}": _kind_of(table, column)
        for table, column in _owner_table(spec).items()
    }
    found = set(kinds.values())
    if len(found) > 1:
        named = ", ".join(f"{where} ({kind.name})" for where, kind in kinds.items())
        raise SpecError(
            f"owners: the owner columns hold different kinds of user id: {named}; one app's "
            "user ids are of one kind, so every owner column must hold integers or every one "
            "UUIDs"
        )
    return found.pop() if found else INT_IDS


def _kind_of(table: Table, column: Any) -> UserIds:
    kind = user_ids_for(column.type)
    if kind is None:
        held = _python_type(column)
        raise SpecError(
            f"owners: the owner column {table.name}.{column.name} holds "
            f"{getattr(held, '__name__', held)} values: an owner column must hold the user's id, "
            "as integers (Integer, BigInteger) or UUIDs (sqlalchemy.Uuid, postgresql.UUID); "
            "another type (a name, an email) is not supported"
        )
    return kind


def _owner_table(spec: AppSpec) -> dict[Table, ColumnElement[Any]]:
    owners: dict[Table, ColumnElement[Any]] = {}
    for model, column in spec.owners.items():
        found: Any = getattr(model, "__table__", None)
        if not isinstance(found, Table):
            raise SpecError(f"owners: {model!r} is not a mapped SQLAlchemy model")
        table: Table = found
        expression: ColumnElement[Any] = column.expression
        if getattr(expression, "table", None) is not table:
            raise SpecError(f"owners: the owner column of {table.name} is not one of its columns")
        owners[table] = expression
    return owners


def _python_type(column: ColumnElement[Any]) -> type | None:
    try:
        python_type: type = column.type.python_type
    except NotImplementedError:  # a type that does not say
        return None
    return python_type


def _compile(
    tool: ReadTool, owners: Mapping[Table, ColumnElement[Any]], user_ids: UserIds
) -> CompiledRead:
    signature = inspect.signature(tool.query, eval_str=True)
    fields: dict[str, Any] = {}
    for name, parameter in signature.parameters.items():
        if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            raise SpecError(f"parameter {name!r} must be a plain named parameter")
        if parameter.annotation is inspect.Parameter.empty:
            raise SpecError(f"parameter {name!r} needs a type")
        if name in PAGE_ARGUMENTS or name == "user_id":
            raise SpecError(f"parameter {name!r} is the gateway's own; choose another name")
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[name] = (parameter.annotation, default)
    filters = tuple(fields)
    if tool.shape == "page":
        limit = Field(description=f"How many {tool.items} per page, {LIMIT_MIN} to {LIMIT_MAX}.")
        fields["limit"] = (Annotated[PageLimit, limit], LIMIT_DEFAULT)
        fields["cursor"] = (Cursor, None)
    arguments = create_model(f"{tool.name}_arguments", __base__=_Arguments, **fields)
    query = tool.query(**{name: _sample(signature.parameters[name]) for name in filters})
    if not isinstance(query, Select):
        raise SpecError("the function must return a sqlalchemy select()")
    read_tables = _from_tables(query)
    for table in find_tables(query, include_joins=False, include_aliases=True):
        if table not in read_tables:
            raise SpecError(
                f"it reads {getattr(table, 'name', table)!s} outside its FROM clause (a subquery), "
                "where the gateway cannot add the owner filter; join the table instead"
            )
    for table in read_tables:
        if table not in owners:
            raise SpecError(
                f"it reads {table.name}, which has no owner column: add it to the spec's owners"
            )
    order: tuple[ColumnElement[Any], ...] = ()
    keys: tuple[str, ...] = ()
    if tool.shape == "page":
        order, keys = _checked_order(tool, query, read_tables)
    elif tool.order:
        raise SpecError("only a page tool takes an order")
    uuids = any(_holds_uuids(column.type) for column in query.selected_columns)
    return CompiledRead(tool, arguments, filters, owners, order, keys, user_ids, uuids)


def _checked_order(
    tool: ReadTool, query: Select[Any], read_tables: set[Table]
) -> tuple[tuple[ColumnElement[Any], ...], tuple[str, ...]]:
    if not tool.order:
        raise SpecError("a page tool needs an order")
    try:
        columns, _ = order_columns(tool.order)
    except ValueError as exc:
        raise SpecError(f"its order cannot be paged: {exc}") from None
    keys: list[str] = []
    for column in columns:
        key = next(
            (k for k, c in query.selected_columns.items() if c.compare(column)),
            None,
        )
        if key is None:
            raise SpecError(f"its order column {column} must be one of the selected columns")
        keys.append(key)
    last = columns[-1]
    table = getattr(last, "table", None)
    if not (
        table in read_tables
        and len(table.primary_key.columns) == 1
        and last.compare(next(iter(table.primary_key.columns)))
    ):
        raise SpecError(
            "its order cannot be paged: the last order column must be a table's primary key, "
            "so that no two rows share a place in the order"
        )
    return tuple(tool.order), tuple(keys)


def _from_tables(query: Select[Any]) -> set[Table]:
    tables: set[Table] = set()
    pending = list(query.get_final_froms())
    while pending:
        element = pending.pop()
        if isinstance(element, Join):
            pending += [element.left, element.right]
        elif isinstance(element, Table):
            tables.add(element)
        else:
            raise SpecError(
                "it selects from something other than tables and joins of tables (a subquery "
                "or an alias), where the gateway cannot add the owner filter"
            )
    return tables


def _owner_columns(read: CompiledRead, query: Select[Any]) -> tuple[ColumnElement[Any], ...]:
    """The owner column of each table the query reads. A select's FROM list is a function of its
    SQLAlchemy cache key (the shape it compiles to, literal values aside), and finding it
    compiles the statement, so it is found once per shape; a shape without a key, every time.
    The key is SQLAlchemy's own (a private name): should a release drop it, every read finds
    its owners afresh, slower and still right."""
    key_of = getattr(query, "_generate_cache_key", None)
    cache_key = key_of() if key_of is not None else None
    if cache_key is None:
        return _find_owner_columns(read, query)
    found = read.owner_shapes.get(cache_key.key)
    if found is None:
        found = read.owner_shapes[cache_key.key] = _find_owner_columns(read, query)
    return found


def _find_owner_columns(read: CompiledRead, query: Select[Any]) -> tuple[ColumnElement[Any], ...]:
    tables = _from_tables(query)
    missing = [t.name for t in tables if t not in read.owners]
    if missing:  # a query function that reads other tables for some arguments only
        raise TaskgateError(ErrorCode.SERVER_ERROR, f"read tool {read.name} reads an unowned table")
    return tuple(read.owners[t] for t in sorted(tables, key=lambda t: t.name))


def _sample(parameter: inspect.Parameter) -> Any:
    """An argument to call the query function with at start: its default, or a value of its
    type (the function only builds a select, so any valid value serves)."""
    if parameter.default is not inspect.Parameter.empty:
        return parameter.default
    return _sample_of(parameter.annotation)


_NIL = uuid.UUID(int=0)  # a UUID argument's value at start


def _sample_of(annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _sample_of(get_args(annotation)[0])
    if origin is Literal:
        return get_args(annotation)[0]
    for kind, value in ((bool, True), (int, 1), (float, 1.0), (str, "x"), (uuid.UUID, _NIL)):
        if annotation is kind:
            return value
    for option in get_args(annotation):
        if option is not type(None):
            return _sample_of(option)
    return None


def _holds_uuids(sql_type: Any) -> bool:
    return isinstance(getattr(sql_type, "impl_instance", sql_type), Uuid)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value) if isinstance(value, uuid.UUID) else value


def jsonable_rows(
    keys: Sequence[str], rows: Sequence[Sequence[Any]], uuids: bool = False
) -> list[dict[str, Any]]:
    """Rows as dicts of JSON-safe values (a datetime as its ISO text, a UUID as its text when
    `uuids`: a hit and a miss answer alike), in one comprehension: a page's hundreds of values
    make a call per value a tenth of a miss's CPU, so a read without UUIDs makes none."""
    if uuids:
        return [{k: _text(v) for k, v in zip(keys, row, strict=True)} for row in rows]
    return [
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in zip(keys, row, strict=True)}
        for row in rows
    ]
